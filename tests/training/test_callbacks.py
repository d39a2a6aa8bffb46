"""ST++'s callbacks: snapshots at spread iterations (kept across a resume), the reliable data first."""

from __future__ import annotations

import pytest
import torch

from atso.data.datasets import TrainingDataset, TrainingPair
from atso.data.description import load_description
from atso.data.transforms import Augmentation
from atso.errors import AtsoError
from atso.models import build_model
from atso.training.callbacks import SaveSnapshots, StagedData, snapshot_iterations
from atso.training.trainer import Callback, Trainer, TrainingSettings


def _dataset(tiny_dataset, count: int) -> TrainingDataset:
    description = load_description(tiny_dataset / "shapes.yaml")
    pairs = [
        TrainingPair(path.stem, path, tiny_dataset / "trainannot" / path.name, False)
        for path in sorted((tiny_dataset / "train").glob("*.png"))[:count]
    ]
    return TrainingDataset(pairs, description, (32, 40), Augmentation(ignore_index=255), batch_size=2, seed=3)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small_unet", 3, base_channels=4, depth=2)


class RecordWeights(Callback):
    name = "record"

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, trainer, iteration):
        self.weights[iteration] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_snapshot_iterations_spread_over_the_schedule():
    assert snapshot_iterations(1600, 2) == [533, 1067]
    assert snapshot_iterations(12, 3) == [3, 6, 9]
    assert snapshot_iterations(1, 2) == [1, 1]  # too short for distinct ones: never iteration 0


def test_snapshots_hold_the_weights_of_their_iteration(tiny_dataset, tmp_path):
    settings = TrainingSettings(iterations=9, lr=0.05, checkpoint_every=9, quiet=True, log_every=9)
    recorder = RecordWeights()
    snapshots = SaveSnapshots([(3, tmp_path / "a.pt"), (6, tmp_path / "b.pt"), (6, tmp_path / "c.pt")])
    Trainer(_model(), _dataset(tiny_dataset, 4), settings, tmp_path / "state.pt", "t", callbacks=[snapshots, recorder]).run()
    for iteration, name in ((3, "a"), (6, "b"), (6, "c")):
        saved = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        assert all(torch.equal(saved[k], recorder.weights[iteration][k]) for k in saved)
    early, later = torch.load(tmp_path / "a.pt", weights_only=True), recorder.weights[6]
    assert any(not torch.equal(early[k], later[k]) for k in early)  # the weights moved in between


def test_a_resumed_job_needs_the_snapshots_it_took_before(tiny_dataset, tmp_path):
    settings = TrainingSettings(iterations=8, lr=0.05, checkpoint_every=4, quiet=True, log_every=4)
    state, dataset = tmp_path / "state.pt", _dataset(tiny_dataset, 4)
    Trainer(_model(), dataset, settings, state, "t", callbacks=[SaveSnapshots([(2, tmp_path / "s.pt")])]).run()
    saved = torch.load(state, weights_only=True)
    saved["iteration"] = 4  # as if killed after the checkpoint at 4, the snapshot at 2 since lost
    torch.save(saved, state)
    (tmp_path / "s.pt").unlink()
    with pytest.raises(AtsoError, match=r"s\.pt: a snapshot of t is missing"):
        Trainer(_model(), dataset, settings, state, "t", callbacks=[SaveSnapshots([(2, tmp_path / "s.pt")])]).run()


def test_staged_data_trains_on_the_first_dataset_until_the_switch(tiny_dataset, tmp_path):
    first, full = _dataset(tiny_dataset, 2), _dataset(tiny_dataset, 6)
    seen: list[tuple[int, bool]] = []

    class Watch(Callback):
        def on_batch(self, trainer, batch):
            seen.append((batch.iteration, trainer.current_dataset is first))
            return batch

    settings = TrainingSettings(iterations=6, lr=0.05, checkpoint_every=6, quiet=True, log_every=6)
    Trainer(_model(), full, settings, tmp_path / "state.pt", "t", callbacks=[StagedData(first, 4), Watch()]).run()
    assert seen == [(0, True), (1, True), (2, True), (3, True), (4, False), (5, False)]


def test_a_switch_at_the_end_keeps_the_first_dataset_throughout(tiny_dataset, tmp_path):
    first, full = _dataset(tiny_dataset, 2), _dataset(tiny_dataset, 6)
    used = []

    class Watch(Callback):
        def on_batch(self, trainer, batch):
            used.append(trainer.current_dataset is first)
            return batch

    settings = TrainingSettings(iterations=4, lr=0.05, checkpoint_every=4, quiet=True, log_every=4)
    Trainer(_model(), full, settings, tmp_path / "state.pt", "t", callbacks=[StagedData(first, 4), Watch()]).run()
    assert used == [True] * 4  # teacher_student.reliability.first_iterations: 1 trains on the stable share only
