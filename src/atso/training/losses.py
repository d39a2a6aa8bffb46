"""Training losses: cross-entropy with ignore, and one for batches that mix full-class targets and
super-class pseudo-labels.

A super-class target ``g`` is stored as ``num_classes + g`` in the same target map as the full-class
labels, so one batch can hold ground-truth masks of S and super-class pseudo-labels of R. For a
super-class pixel the student keeps its full-class output: the loss sums its softmax within group
``g`` and takes the negative log (the paper's section 5.2).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(ignore_index: int) -> LossFunction:
    """Pixel-wise cross-entropy averaged over non-ignored pixels (0, not NaN, for an all-ignored batch)."""

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Per-pixel losses summed by an ordinary reduction: CUDA's own 'sum' reduction adds with atomics,
        # which runtime.deterministic refuses.
        pixels = torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
        return pixels.sum() / (target != ignore_index).sum().clamp(min=1)

    return loss


def segmentation_loss(
    num_classes: int, ignore_index: int = 255, superclass_table: np.ndarray | None = None
) -> LossFunction:
    """Cross-entropy over full-class pixels plus super-class NLL, averaged over non-ignored pixels.

    Args:
        num_classes: C, the network's output channels.
        ignore_index: target value that is not trained on.
        superclass_table: class index -> super-class index, to accept super-class targets.
    """
    groups = None
    if superclass_table is not None:
        table = torch.as_tensor(np.asarray(superclass_table), dtype=torch.long)
        groups = [torch.nonzero(table == g).flatten() for g in range(int(table.max()) + 1)]
        if num_classes + len(groups) > ignore_index:
            raise ValueError("num_classes + super-classes must stay below ignore_index")

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probabilities = F.log_softmax(logits.float(), dim=1)
        valid = target != ignore_index
        full = valid & (target < num_classes)
        picked = log_probabilities.gather(1, torch.where(full, target, 0).unsqueeze(1)).squeeze(1)
        total = -(picked * full).sum()
        if groups is not None:
            coarse = valid & (target >= num_classes)
            group_log_probabilities = torch.stack(
                [torch.logsumexp(log_probabilities[:, members.to(logits.device)], dim=1) for members in groups], dim=1
            )
            index = torch.where(coarse, target - num_classes, 0).clamp(max=len(groups) - 1)
            total = total - (group_log_probabilities.gather(1, index.unsqueeze(1)).squeeze(1) * coarse).sum()
        return total / valid.sum().clamp(min=1)

    return loss
