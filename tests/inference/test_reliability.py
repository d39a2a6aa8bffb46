"""ST++'s reliability: agreement of label maps, stability over snapshots, the reliable share."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from atso.inference.reliability import agreement_iou, most_reliable, snapshot_name, stability_scores


def test_agreement_is_the_mean_iou_over_classes_either_map_predicts():
    a = np.array([[0, 0, 1, 1]])
    b = np.array([[0, 1, 1, 1]])
    assert agreement_iou(a, a, 5) == 1.0
    assert agreement_iou(a, b, 5) == pytest.approx((1 / 2 + 2 / 3) / 2)  # classes 2-4 absent from both
    assert agreement_iou(np.zeros((2, 2)), np.ones((2, 2)), 2) == 0.0
    assert agreement_iou(a.reshape(1, 2, 2), b.reshape(1, 2, 2), 2) == agreement_iou(a, b, 2)  # volumes too


def test_most_reliable_keeps_the_top_share_in_the_given_order():
    scores = {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.9}
    assert most_reliable(["a", "b", "c", "d"], scores, 0.5) == ["b", "d"]
    assert most_reliable(["a", "b", "c", "d"], scores, 0.6) == ["b", "c", "d"]  # a share rounds up
    assert most_reliable(["a", "c"], scores, 0.01) == ["c"]  # at least one
    assert most_reliable(["a", "b", "c"], {"a": 0.5, "b": 0.5, "c": 0.5}, 0.5) == ["a", "b"]  # ties: given order
    assert most_reliable([], scores, 0.5) == []


class FakePredictor:
    """Predicts fixed label maps per model name; an ensemble group takes its first member's."""

    def __init__(self, maps):
        self.maps = maps
        self.groups = None

    def predict(self, samples, groups, desc="", superclass_table=None):
        self.groups = groups
        for sample in samples:
            yield sample, {name: SimpleNamespace(labels=self.maps[members[0]][sample.id]) for name, members in groups.items()}


def test_stability_is_the_mean_agreement_of_the_snapshots_with_the_final_teacher():
    final = {"x": np.array([0, 0, 1, 1]), "y": np.array([0, 0, 1, 1])}
    early = {"x": np.array([0, 1, 1, 1]), "y": np.array([1, 1, 0, 0])}
    predictor = FakePredictor({"t": final, snapshot_name("t", 1): early, snapshot_name("t", 2): final})
    samples = [SimpleNamespace(id="x"), SimpleNamespace(id="y")]
    scores = stability_scores(predictor, samples, ["t"], 2, num_classes=2)
    assert scores == pytest.approx({"x": ((1 / 2 + 2 / 3) / 2 + 1) / 2, "y": 0.5})
    assert predictor.groups == {"final": ["t"], "snapshot 1": ["t@1"], "snapshot 2": ["t@2"]}
