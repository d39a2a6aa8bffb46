"""What a run needs to know about its samples, written once for 2D images and once for 3D volumes.

A run chooses its modality once (:func:`atso.modalities.for_run`); the stages, the API and the report
call the same methods whichever it is: build the network(s), make training pairs and datasets, predict
(with view fusion for volumes), read truth and pseudo-labels, and score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from atso.checkpoints import ModelInfo
from atso.config import Config, SourceConfig
from atso.data.description import DatasetDescription
from atso.data.samples import Sample
from atso.data.splits import Split
from atso.inference.predictor import Prediction, Predictor

MaskDescription = Callable[[Sample], DatasetDescription]  # the description a sample's mask is read with


class Scores(Protocol):
    """Accumulated scores: one case at a time, then a JSON-ready summary."""

    def add_case(self, prediction: Any, target: Any, case_id: str | None = None, unlabeled: int | None = None) -> Any: ...

    def summary(self) -> dict[str, Any]: ...

    def labeled_only(self) -> "Scores": ...


@dataclass(frozen=True)
class Part:
    """A network trained on its own: the whole model for images, one view's network for volumes."""

    key: str | None  # None: the model itself (its checkpoint is the job's state.pt)
    network: torch.nn.Module
    views: tuple[str, ...] = ()


class Modality:
    """The interface; :class:`atso.modalities.images.Images` and ``volumes.Volumes`` implement it.

    ``config`` is the run's (None for a model file scored or applied on its own: see
    :func:`atso.modalities.for_model`); ``description`` is the label space.
    """

    name = "modality"
    label_suffix = ""  # pseudo-label files: label maps like the ground truth
    case_noun = "case"  # what one test case is, in the report's sentences
    measure = ""  # the headline measure's name in the report
    case_score = ""  # the per-case score in a summary's case list
    # (record key suffix, summary key) of the headline scores, the first being the headline itself
    headline: tuple[tuple[str, str], ...] = ()
    record_head: dict[str, Any] = {}  # keys every evaluation record starts with
    keeps_case_lists = False  # whether test / reference scores in metrics.jsonl list every case
    labeling_keys_first: tuple[str, ...] = ()  # @R keys that lead the record (kept where they always stood)
    supports_superclasses = False
    drawing_note = ""  # how the report draws a case, where that needs saying
    slow_to_predict = False  # the report ranks cases by the recorded scores instead of predicting them all
    case_grouping = "sequence"  # sample_groups' grouping of near-duplicates: the report shows each group once first

    def __init__(self, description: DatasetDescription, config: Config | None = None) -> None:
        self.description = description
        self.config = config

    @property
    def run_config(self) -> Config:
        assert self.config is not None, "a run's modality needs the run's config"
        return self.config

    # ----- samples, checks and networks -----------------------------------------------------------------
    def list_source(self, source: SourceConfig, need_masks: bool = True) -> list[Sample]:
        """The samples of one configured source (images, or scans)."""
        raise NotImplementedError

    def preflight(self, split: Split, mask_description: MaskDescription) -> None:
        """Read every sample once, so bad input fails before training; refuse options this modality lacks."""
        raise NotImplementedError

    def build_network(self) -> torch.nn.Module:
        """The untrained model of the run's config."""
        raise NotImplementedError

    def model_extra(self) -> dict[str, Any]:
        """What a model file must carry, beyond the network, to predict on its own."""
        return {}

    def parts(self, model: torch.nn.Module) -> list[Part]:
        """The networks of a model that train one after another."""
        return [Part(None, model)]

    # ----- training -------------------------------------------------------------------------------------
    def training_pair(
        self, sample_id: str, image: Path, target: Path, pseudo: bool, offset: int = 0,
        mask_description: DatasetDescription | None = None,
    ) -> Any:
        """One image (or scan) and the target it is trained on."""
        raise NotImplementedError

    def training_dataset(self, pairs: list[Any], student: bool, seed: int, part: Part) -> Any:
        """The batch stream one part trains on: M0 with the base augmentation, a student with its own."""
        raise NotImplementedError

    def training_outputs(self, examples: int, iterations_here: int, seconds: float) -> dict[str, Any]:
        """The throughput a finished training job records in the manifest."""
        return {}

    # ----- prediction and scoring -----------------------------------------------------------------------
    def predictor(self, models: dict[str, torch.nn.Module], device: torch.device, flip: bool) -> Predictor:
        """A predictor with the run's inference settings."""
        raise NotImplementedError

    def file_predictor(
        self, models: dict[str, torch.nn.Module], info: ModelInfo, device: torch.device, batch_size: int,
        input_size: tuple[int, int] | None = None, quiet: bool = False,
    ) -> Predictor:
        """A predictor for model files, predicting as their info says they were trained."""
        raise NotImplementedError

    def scores(self, names: list[str], ignore_index: int) -> Scores:
        """An empty accumulator of this modality's scores."""
        raise NotImplementedError

    def read_truth(self, sample: Sample, description: DatasetDescription, shape: tuple[int, ...]) -> np.ndarray:
        """A sample's ground truth as class indices (with ignore), checked against the prediction's shape."""
        raise NotImplementedError

    def read_labels(self, path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A pseudo-label file as class indices (with ignore)."""
        raise NotImplementedError

    def superclass_names(self) -> list[str]:
        """The super-classes scores are also reported at (none where super-classes are not supported)."""
        return list(self.description.superclasses or {}) if self.supports_superclasses else []

    def write_prediction(
        self, output: Path, sample: Sample, prediction: Prediction, overlays: Path | None = None, fsync: bool = True
    ) -> tuple[Path, Path | None]:
        """Write one prediction as ``output/<id><label_suffix>`` (read back by :meth:`read_labels`), and an
        overlay under ``overlays``; return both paths.

        With ``fsync=False`` the caller flushes it before recording it (:func:`atso.storage.fsync_files`).
        """
        raise NotImplementedError
