"""Prediction at the input size, resized back; ensembles average softmax."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from atso.data.samples import Sample
from atso.inference.predictor import Predictor


class ConstantModel(torch.nn.Module):
    """Logits that favour one class everywhere, by a chosen margin."""

    def __init__(self, favoured: int, margin: float = 2.0, classes: int = 3) -> None:
        super().__init__()
        self.logits = torch.zeros(classes)
        self.logits[favoured] = margin

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        return self.logits.view(1, -1, 1, 1).expand(n, -1, h, w).clone()


def make_samples(tmp_path, sizes):
    samples = []
    for index, (height, width) in enumerate(sizes):
        path = tmp_path / f"img_{index}.png"
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)
        samples.append(Sample(path.stem, path))
    return samples


def test_predictions_come_back_at_each_images_size(tmp_path):
    samples = make_samples(tmp_path, [(20, 30), (17, 23), (40, 10)])
    predictor = Predictor({"a": ConstantModel(2)}, (16, 16), torch.device("cpu"), batch_size=2)
    results = list(predictor.predict(samples, {"a": ["a"]}))
    assert [s.id for s, _ in results] == [s.id for s in samples]
    for (sample, predictions), size in zip(results, [(20, 30), (17, 23), (40, 10)]):
        assert predictions["a"].labels.shape == size
        assert (predictions["a"].labels == 2).all()


def test_ensemble_is_the_mean_softmax(tmp_path):
    samples = make_samples(tmp_path, [(8, 8)])
    models = {"weak": ConstantModel(0, margin=1.0), "strong": ConstantModel(1, margin=3.0)}
    predictor = Predictor(models, (8, 8), torch.device("cpu"))
    _, predictions = next(predictor.predict(samples, {"ensemble": ["weak", "strong"], "weak": ["weak"]}))
    weak = torch.softmax(torch.tensor([1.0, 0, 0]), 0)
    strong = torch.softmax(torch.tensor([0, 3.0, 0]), 0)
    mean = (weak + strong) / 2
    assert (predictions["ensemble"].labels == 1).all()
    assert np.allclose(predictions["ensemble"].confidence, mean.max().item(), atol=1e-6)
    assert (predictions["weak"].labels == 0).all()


def test_progress_bar_unless_quiet(tmp_path, capsys):
    samples = make_samples(tmp_path, [(8, 8)] * 3)
    for quiet in (False, True):
        predictor = Predictor({"a": ConstantModel(1)}, (8, 8), torch.device("cpu"), quiet=quiet)
        list(predictor.predict(samples, {"a": ["a"]}, desc="scoring"))
        printed = capsys.readouterr().err
        assert ("scoring" in printed) is not quiet


def test_compile_compiles_every_model_in_place(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *args, **kwargs: compiled.append(self))
    models = {"a": ConstantModel(0), "b": ConstantModel(1)}
    Predictor(models, (8, 8), torch.device("cpu"))
    assert compiled == []  # runtime.compile is off by default
    Predictor(models, (8, 8), torch.device("cpu"), compile=True)
    assert compiled == [models["a"], models["b"]]
