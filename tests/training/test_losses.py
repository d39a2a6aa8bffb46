"""The super-class loss equals the NLL of the summed probabilities, exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atso.training.losses import segmentation_loss


def test_full_class_targets_match_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5)
    target = torch.randint(0, 4, (2, 3, 5))
    target[0, 0, 0] = 255
    expected = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    assert segmentation_loss(4)(logits, target).item() == pytest.approx(expected.item(), abs=1e-6)


def test_superclass_pixel_is_the_nll_of_its_groups_summed_softmax():
    # One pixel, three classes with softmax (0.5, 0.3, 0.2): groups {0, 1} -> 0 and {2} -> 1.
    probabilities = torch.tensor([0.5, 0.3, 0.2])
    logits = probabilities.log().view(1, 3, 1, 1)
    table = np.array([0, 0, 1])
    loss = segmentation_loss(3, superclass_table=table)
    as_group_0 = loss(logits, torch.tensor([[[3 + 0]]]))
    as_group_1 = loss(logits, torch.tensor([[[3 + 1]]]))
    assert as_group_0.item() == pytest.approx(-math.log(0.8), abs=1e-6)
    assert as_group_1.item() == pytest.approx(-math.log(0.2), abs=1e-6)


def test_mixed_batch_averages_over_all_scored_pixels():
    probabilities = torch.tensor([0.5, 0.3, 0.2])
    logits = probabilities.log().view(1, 3, 1, 1).expand(1, 3, 1, 3).clone()
    target = torch.tensor([[[1, 3 + 0, 255]]])  # a full-class pixel, a super-class pixel, an ignored one
    value = segmentation_loss(3, superclass_table=np.array([0, 0, 1]))(logits, target)
    assert value.item() == pytest.approx((-math.log(0.3) - math.log(0.8)) / 2, abs=1e-6)


def test_gradients_flow_to_every_class_of_the_group():
    logits = torch.zeros(1, 3, 1, 1, requires_grad=True)
    segmentation_loss(3, superclass_table=np.array([0, 0, 1]))(logits, torch.tensor([[[3]]])).backward()
    assert logits.grad[0, 0, 0, 0] < 0 and logits.grad[0, 1, 0, 0] < 0 and logits.grad[0, 2, 0, 0] > 0
