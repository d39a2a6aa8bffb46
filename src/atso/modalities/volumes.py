"""3D volumes: one network per view trained on slices, fused NIfTI label volumes, foreground DSC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from atso.checkpoints import ModelInfo, check_pretrained
from atso.config import SourceConfig, VolumeConfig
from atso.data.description import DatasetDescription
from atso.data.samples import Sample
from atso.data.splits import Split
from atso.data.volume_slices import (
    SliceAugmentation,
    SliceIntensityJitter,
    SliceTrainingDataset,
    VolumePair,
    read_pseudo_label_volume,
)
from atso.data.volume_sources import list_volume_source
from atso.data.volumes import read_label_volume, read_volume, write_volume
from atso.errors import AtsoError
from atso.evaluation.volume_metrics import VolumeScores
from atso.inference.predictor import Prediction, Predictor
from atso.inference.volume_predictor import VolumePredictor
from atso.modalities.base import MaskDescription, Modality, Part, Scores
from atso.models.views import ViewNetworks, build_view_networks


class _CaseScores(VolumeScores):
    """Volume scores under the name every modality's scores share."""

    def add_case(self, prediction: Any, target: Any, case_id: str | None = None, unlabeled: int | None = None) -> Any:
        return self.add_volume(prediction, target, case_id, unlabeled)


class Volumes(Modality):
    """3D volumes: the view networks train one after another; predictions fuse the views."""

    name = "volume"
    label_suffix = ".nii.gz"  # fused, on the scan's grid
    case_noun = "volume"
    measure = "DSC"
    case_score = "dice"
    headline = (("dice", "mean_case_dice"), ("global_dice", "global_dice"))
    record_head = {"metric": "dice"}
    keeps_case_lists = True
    labeling_keys_first = ("granularity",)
    drawing_note = " (volumes drawn on the axial slice with the most foreground)"
    slow_to_predict = True
    case_grouping = "sample"  # la_003 and la_004 are two patients, not two frames of one clip

    def list_source(self, source: SourceConfig, need_masks: bool = True) -> list[Sample]:
        return list_volume_source(source, need_masks)

    def preflight(self, split: Split, mask_description: MaskDescription) -> None:
        """Every scan read fully (they are few and large), each label checked against its scan's grid."""
        config = self.run_config
        check_pretrained(config.model.pretrained, self.build_network())
        if config.teacher_student.pseudo_labels == "super" or "super" in config.teacher_student.compare_pseudo_labels:
            raise AtsoError("teacher_student.pseudo_labels: 'super' is for 2D images; volumes use full-class labels")
        for sample in split.labeled + split.test + split.reference:
            grid = read_volume(sample.image)  # read_label_volume checks the label's shape and affine against it
            if sample.mask is not None:
                read_label_volume(sample.mask, mask_description(sample), grid)

    def build_network(self) -> torch.nn.Module:
        config = self.run_config
        volume = config.data.volume
        return build_view_networks(
            config.model.name, self.description.num_classes, 2 * volume.context + 1,
            volume.views, volume.shared_network, **config.model.options,
        )

    def model_extra(self) -> dict[str, Any]:
        # How to cut and fuse, so a model file predicts volumes on its own.
        return {"volume": self.run_config.data.volume.model_dump(mode="json")}

    def parts(self, model: torch.nn.Module) -> list[Part]:
        assert isinstance(model, ViewNetworks)
        return [Part(key, model.networks[key], tuple(model.views_of(key))) for key in model.keys()]

    def training_pair(
        self, sample_id: str, image: Path, target: Path, pseudo: bool, offset: int = 0,
        mask_description: DatasetDescription | None = None,
    ) -> VolumePair:
        return VolumePair(sample_id, image, target, pseudo, mask_description)

    def training_dataset(self, pairs: list[Any], student: bool, seed: int, part: Part) -> SliceTrainingDataset:
        config = self.run_config
        augmentation = SliceAugmentation(config.train.augmentation(student=student)[0], config.train.hflip, self.description.ignore_index)
        return SliceTrainingDataset(
            pairs, self.description, config.data.volume, list(part.views), config.data.input_size, augmentation,
            batch_size=config.train.batch_size, seed=seed, labeled_share=config.train.labeled_share,
            mix=config.train.mix if student else "none", mix_probability=config.train.mix_probability,
            strong=SliceIntensityJitter.from_config(config.train.strong) if student else None,
        )

    def training_outputs(self, examples: int, iterations_here: int, seconds: float) -> dict[str, Any]:
        return {"training_slices": examples, "seconds_training": round(seconds, 1)}

    def predictor(self, models: dict[str, torch.nn.Module], device: torch.device, flip: bool) -> Predictor:
        config = self.run_config
        runtime = config.runtime
        return VolumePredictor(
            models, config.data.volume, config.data.input_size, device,  # type: ignore[arg-type]
            batch_size=config.evaluation.batch_size, flip=flip, amp=runtime.amp, amp_dtype=runtime.amp_dtype, quiet=runtime.quiet,
            compile=runtime.compile,
        )

    def file_predictor(
        self, models: dict[str, torch.nn.Module], info: ModelInfo, device: torch.device, batch_size: int,
        input_size: tuple[int, int] | None = None, quiet: bool = False,
    ) -> Predictor:
        # Cut, resize and fuse as the model file says its networks were trained (input_size included).
        settings = VolumeConfig(**info.extra["volume"])
        return VolumePredictor(models, settings, info.input_size, device, batch_size=batch_size, quiet=quiet)  # type: ignore[arg-type]

    def scores(self, names: list[str], ignore_index: int) -> Scores:
        return _CaseScores(names, ignore_index)

    def read_truth(self, sample: Sample, description: DatasetDescription, shape: tuple[int, ...]) -> np.ndarray:
        return read_label_volume(sample.mask, description, shape).data  # type: ignore[arg-type]

    def read_labels(self, path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
        return read_pseudo_label_volume(path, self.description.num_classes, self.description.ignore_index, shape)

    def write_prediction(
        self, output: Path, sample: Sample, prediction: Prediction, overlays: Path | None = None, fsync: bool = True
    ) -> tuple[Path, Path | None]:
        return write_volume(output / f"{sample.id}.nii.gz", prediction.labels, like=prediction.grid, fsync=fsync), None
