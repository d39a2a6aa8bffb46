"""The stages a job can be: each a function of the job and the run context."""

from __future__ import annotations

from typing import Any, Callable

from atso.running.context import RunContext
from atso.running.stages.evaluate import evaluate
from atso.running.stages.label import label
from atso.running.stages.train import train

Stage = Callable[[Any, RunContext], dict[str, Any]]  # (job, context) -> the manifest's outputs of the job

STAGES: dict[str, Stage] = {"train": train, "label": label, "evaluate": evaluate}  # job.kind -> stage
