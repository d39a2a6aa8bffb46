"""Pseudo-labels honour a threshold (one, or one per class), and a rerun skips finished files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atso.data.images import read_label_map
from atso.inference.labeler import class_balanced_thresholds, label_samples
from atso.inference.predictor import Prediction, Predictor

from conftest import record_fsyncs
from test_predictor import ConstantModel, make_samples


class FixedPredictor:
    """Hands back chosen labels and confidences per sample, as a teacher would."""

    def __init__(self, outputs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.outputs = outputs

    def predict(self, samples, groups, desc="", superclass_table=None):
        for sample in samples:
            labels, confidence = self.outputs[sample.id]
            yield sample, {name: Prediction(labels, confidence) for name in groups}


def test_labeler_writes_thresholded_labels_and_skips_finished_files(tmp_path):
    samples = make_samples(tmp_path, [(10, 12), (10, 12)])
    predictor = Predictor({"t": ConstantModel(1, margin=0.5)}, (10, 12), torch.device("cpu"))
    out = tmp_path / "labels"
    palette = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]
    confidence = torch.softmax(torch.tensor([0, 0.5, 0]), 0).max().item()
    stats = label_samples(predictor, samples, ["t"], out, palette, 255, confidence_threshold=confidence + 0.01)
    assert stats["labeled"] == 2 and stats["kept_fraction"] == 0.0
    assert (read_label_map(out / "img_0.png", 3) == 255).all()
    stats = label_samples(predictor, samples, ["t"], out, palette, 255)
    assert stats["labeled"] == 0  # existing files are complete (atomic writes), so they are skipped
    (out / "img_1.png").unlink()
    stats = label_samples(predictor, samples, ["t"], out, palette, 255)
    assert stats["labeled"] == 1 and (read_label_map(out / "img_1.png", 3) == 1).all()


def test_label_files_are_flushed_once_each_after_the_last_is_written(tmp_path, monkeypatch):
    import atso.inference.labeler as labeler

    samples = make_samples(tmp_path, [(10, 12)] * 3)
    predictor = Predictor({"t": ConstantModel(1)}, (10, 12), torch.device("cpu"))
    out = tmp_path / "labels"
    label_samples(predictor, samples[:1], ["t"], out, [(0, 0, 0), (255, 0, 0)], 255)  # one file from before
    events = record_fsyncs(monkeypatch)
    real_write = labeler.write_label_png

    def write(path, *args, **kwargs):
        events.append(("write", path.name))
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(labeler, "write_label_png", write)
    label_samples(predictor, samples, ["t"], out, [(0, 0, 0), (255, 0, 0)], 255)

    assert events[:2] == [("write", "img_1.png"), ("write", "img_2.png")]  # no fsync between writes
    flushed = events[2:]
    files = sorted((out / f"{sample.id}.png").resolve() for sample in samples)
    assert sorted(flushed[:3]) == files  # every file of the call, the one written before included
    assert flushed[3:] == [out.resolve()]  # then the folder, once


def common_and_rare(tmp_path):
    """Class 0 on most pixels, sure of itself (0.6-1.0); class 1 on a few, unsure (0.35-0.55); class 2 never."""
    samples = make_samples(tmp_path, [(10, 20), (10, 20)])
    rng = np.random.default_rng(0)
    outputs = {}
    for sample in samples:
        labels = np.zeros((10, 20), np.uint8)
        labels[:, :4] = 1
        confidence = np.where(labels == 0, rng.uniform(0.6, 1.0, labels.shape), rng.uniform(0.35, 0.55, labels.shape))
        outputs[sample.id] = (labels, confidence.astype(np.float32))
    return samples, FixedPredictor(outputs), outputs


def test_class_balanced_thresholds_keep_the_share_of_every_class(tmp_path):
    samples, predictor, outputs = common_and_rare(tmp_path)
    thresholds = class_balanced_thresholds(predictor, samples, ["t"], num_classes=3, keep=0.5)
    labels = np.concatenate([outputs[s.id][0].ravel() for s in samples])
    confidence = np.concatenate([outputs[s.id][1].ravel() for s in samples])
    for cls in (0, 1):
        kept = (confidence[labels == cls] >= thresholds[cls]).mean()
        assert 0.5 <= kept < 0.6  # the most confident half, to a bin (80 pixels of class 1 span 37 bins)
    assert thresholds[1] < 0.6 < thresholds[0]  # the rare class keeps pixels a global 0.6 would drop
    assert thresholds[2] == 0.0  # never predicted: nothing to select


def test_labels_with_class_thresholds_ignore_each_class_least_sure_pixels(tmp_path):
    samples, predictor, outputs = common_and_rare(tmp_path)
    thresholds = class_balanced_thresholds(predictor, samples, ["t"], num_classes=3, keep=0.5)
    out = tmp_path / "labels"
    stats = label_samples(predictor, samples, ["t"], out, [(0, 0, 0), (255, 0, 0), (0, 0, 255)], 255, thresholds)
    assert stats["kept_fraction"] == pytest.approx(0.5, abs=0.05)
    for sample in samples:
        written = read_label_map(out / f"{sample.id}.png", 3)
        labels, confidence = outputs[sample.id]
        expected = np.where(confidence >= thresholds[labels], labels, 255)
        assert (written == expected).all()
        assert (written == 1).any()


def test_keep_everything_keeps_every_pixel(tmp_path):
    samples = make_samples(tmp_path, [(6, 6)])
    predictor = Predictor({"t": ConstantModel(1, margin=0.5)}, (6, 6), torch.device("cpu"))
    thresholds = class_balanced_thresholds(predictor, samples, ["t"], num_classes=3, keep=1.0)
    stats = label_samples(predictor, samples, ["t"], tmp_path / "labels", [(0, 0, 0)] * 3, 255, thresholds)
    assert stats["kept_fraction"] == 1.0
