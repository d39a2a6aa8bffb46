"""Optional TensorBoard logs: loss and learning rate of each training job, @R/@E across generations.

Layout under ``RUN_DIR/tensorboard/``: ``<job id>/`` per training job (``train/loss``, ``train/lr`` per
logged iteration) and ``eval/<strategy>/`` per strategy (``eval/test_miou``, ``eval/reference_miou``,
``eval/agreement_with_m0``, ``eval/changed_fraction`` per generation, ATSO's final model at T+1), so each
strategy draws one curve. Values are fractions, as in ``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from atso.errors import AtsoError
from atso.reporting.tables import headline_agreement
from atso.training.trainer import LogCallback


def require_tensorboard() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or an error saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise AtsoError("runtime.tensorboard: needs `pip install tensorboard`") from exc
    return SummaryWriter


class TensorBoardLog:
    """Writes a run's TensorBoard event files; built only when ``runtime.tensorboard`` is on.

    Raises:
        AtsoError: tensorboard is not installed.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._writer = require_tensorboard()

    @contextlib.contextmanager
    def training(self, job_id: str) -> Iterator[LogCallback]:
        """A callback for ``train(on_log=...)`` that logs one training job."""
        writer = self._writer(log_dir=str(self.root / job_id))

        def on_log(iteration: int, loss: float, lr: float) -> None:
            writer.add_scalar("train/loss", loss, iteration)
            writer.add_scalar("train/lr", lr, iteration)

        try:
            yield on_log
        finally:
            writer.close()

    def evaluation(self, record: dict[str, Any], strategies: list[str], generations: int) -> None:
        """Log one evaluation record; generation 0 is shared, so it starts every strategy's curve."""
        generation = record["generation"]
        step = generations + 1 if generation == "final" else int(generation)
        values = {
            "eval/test_miou": record.get("test_miou"),
            "eval/reference_miou": record.get("reference_miou"),
            "eval/agreement_with_m0": headline_agreement(record),
            "eval/changed_fraction": record.get("changed_fraction"),
        }
        targets = strategies if record["strategy"] == "shared" else [record["strategy"]]
        for strategy in targets:
            writer = self._writer(log_dir=str(self.root / "eval" / strategy))
            try:
                for tag, value in values.items():
                    if value is not None:
                        writer.add_scalar(tag, float(value), step)
            finally:
                writer.close()
