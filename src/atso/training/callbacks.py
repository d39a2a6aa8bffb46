"""What ST++'s selection adds to a training job, as trainer callbacks: earlier snapshots, staged data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from atso.errors import AtsoError
from atso.runtime import distributed
from atso.storage import atomic_save_torch
from atso.training.trainer import Callback, Trainer


def snapshot_iterations(total: int, count: int) -> list[int]:
    """``count`` (1-based) iterations spread over a schedule of ``total``: k / (count + 1) of it, k = 1..count.

    A schedule too short for distinct ones repeats iterations (at least 1, at most ``total``).
    """
    return [min(total, max(1, round(total * k / (count + 1)))) for k in range(1, count + 1)]


class SaveSnapshots(Callback):
    """Keeps the weights at given iterations, so the model's earlier checkpoints can rank its pseudo-labels.

    A snapshot is written (rank 0, atomically) right after its iteration's optimizer step, before that
    iteration's checkpoint, so a job resumed past it already has it.
    """

    name = "snapshots"

    def __init__(self, snapshots: list[tuple[int, Path]]) -> None:
        self.snapshots = list(snapshots)  # (1-based iteration, file)

    def on_train_start(self, trainer: Trainer) -> None:
        missing = [path for iteration, path in self.snapshots if iteration <= trainer.start and not path.is_file()]
        if missing:
            raise AtsoError(
                f"{missing[0]}: a snapshot of {trainer.job_name} is missing from the run directory; "
                "delete that job's folder to train it again"
            )

    def on_step_end(self, trainer: Trainer, iteration: int) -> None:
        paths = [path for at, path in self.snapshots if at == iteration]
        if paths and distributed.is_main():
            weights = {key: value.detach().cpu() for key, value in trainer.model.state_dict().items()}
            for path in paths:
                atomic_save_torch(path, weights)


class StagedData(Callback):
    """Trains on ``first`` before iteration ``switch_at`` and on the trainer's own dataset after it.

    ST++ trains on S plus its teacher's reliable images first: a student that has learned from the
    likeliest right labels is less pulled by the wrong ones it meets later.
    """

    name = "staged-data"

    def __init__(self, first: Any, switch_at: int) -> None:
        self.first, self.switch_at = first, switch_at

    def switch_iterations(self, trainer: Trainer) -> tuple[int, ...]:
        return (self.switch_at,)

    def dataset(self, trainer: Trainer, iteration: int, dataset: Any) -> Any:
        return self.first if iteration < self.switch_at else dataset
