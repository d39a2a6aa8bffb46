"""What every stage of a run reads: the config, the run directory, the plan, the data and the settings."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Protocol

import torch

from atso.checkpoints import ModelInfo, load_model
from atso.config import Config
from atso.data.description import load_description
from atso.data.samples import read_list_file, write_list_file
from atso.data.splits import Split, build_split
from atso.errors import AtsoError
from atso.inference.predictor import Predictor
from atso.modalities import Modality, for_run
from atso.running.label_space import LabelSpace
from atso.running.run_dir import RunDirectory
from atso.runtime.devices import resolve_device
from atso.strategies.plan import LabelJob, Plan

Log = Callable[[str], None]
TrainingLog = Callable[[int, float, float], None]  # (iteration, mean loss, learning rate)


class RunObserver(Protocol):
    """Where training curves and evaluation records go besides the run directory (e.g. TensorBoard)."""

    def training(self, name: str) -> ContextManager[TrainingLog]: ...

    def evaluation(self, record: dict[str, Any], strategies: list[str], generations: int) -> None: ...


@dataclass
class RunContext:
    """One run's config, directory, plan, label space, modality and device, read by every stage."""

    config: Config
    run_dir: RunDirectory
    plan: Plan
    log: Log = print
    observer: RunObserver | None = None

    def __post_init__(self) -> None:
        self.labels = LabelSpace(load_description(self.config.data.description))
        self.description = self.labels.description
        self.modality: Modality = for_run(self.config, self.description)
        self.device = resolve_device(self.config.runtime.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.config.runtime.cudnn_benchmark
        self._split: Split | None = None

    @property
    def split(self) -> Split:
        """The run's S, reference folds and E, listed and checked once."""
        if self._split is None:
            split = build_split(self.config, self.modality.list_source)
            if not split.labeled:
                where = self.config.data.labeled_list or "data"
                raise AtsoError(
                    f"{where}: the labeled set is empty; set data.labeled_count or list samples in data.labeled_list"
                )
            if self.plan.generations > 0 and not split.reference:
                raise AtsoError(
                    "data: the reference set is empty (every training sample is labeled); "
                    "lower data.labeled_count or add data.unlabeled sources"
                )
            self._split = split
        return self._split

    def write_split(self) -> None:
        """Record the split as list files; refuse to go on if the data no longer gives the recorded one."""
        split = self.split
        files = {"labeled.txt": split.labeled, "test.txt": split.test}
        files.update({f"reference_fold_{k}.txt": fold for k, fold in enumerate(split.reference_folds, start=1)})
        for name, samples in files.items():
            path = self.run_dir.splits / name
            if path.is_file():
                recorded = [s.image.resolve() for s in read_list_file(path)]
                if recorded != [s.image.resolve() for s in samples]:
                    raise AtsoError(f"{path}: the data no longer gives this split; use a new --out directory")
            else:
                write_list_file(path, samples)

    def granularity(self, labeling: str) -> str:
        """Whether a labeling job wrote full-class or super-class labels."""
        job = self.plan.job(labeling)
        return job.granularity if isinstance(job, LabelJob) else "full"

    def model_info(self, extra: dict[str, Any]) -> ModelInfo:
        """What a model file of this run says about itself."""
        return ModelInfo(
            name=self.config.model.name,
            options=dict(self.config.model.options),
            description=self.description,
            input_size=tuple(self.config.data.input_size),
            extra={**extra, **self.modality.model_extra()},
        )

    def load_models(self, job_ids: list[str]) -> dict[str, torch.nn.Module]:
        return {job_id: load_model(self.run_dir.model_path(job_id), self.device)[0] for job_id in job_ids}

    def predictor(self, models: dict[str, torch.nn.Module], labeling: bool = False) -> Predictor:
        """A predictor for scoring, or for ``labeling`` (which may add a flip of its own: a better teacher)."""
        flip = self.config.evaluation.flip or (labeling and self.config.teacher_student.label_flip)
        return self.modality.predictor(models, self.device, flip)

    def training_log(self, name: str) -> ContextManager[TrainingLog | None]:
        """Where one network's training curve goes, if anywhere."""
        return self.observer.training(name) if self.observer is not None else contextlib.nullcontext()
