"""2D images: one network, PNG label maps, mIoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from atso.checkpoints import ModelInfo, check_pretrained
from atso.config import SourceConfig
from atso.data.datasets import TrainingDataset, TrainingPair
from atso.data.description import DatasetDescription
from atso.data.images import overlay, read_image, read_label_map, read_mask, verify_image, write_label_png, write_rgb_png
from atso.data.samples import Sample, list_samples
from atso.data.splits import Split
from atso.data.transforms import Augmentation, StrongPhotometric
from atso.errors import AtsoError
from atso.evaluation.metrics import SegmentationScores
from atso.inference.predictor import Prediction, Predictor
from atso.modalities.base import MaskDescription, Modality, Part, Scores
from atso.models import build_model


class Images(Modality):
    """2D images: one network, PNG label maps, mIoU (and super-class mIoU)."""

    name = "image"
    label_suffix = ".png"
    case_noun = "image"
    measure = "mIoU"
    case_score = "miou"
    headline = (("miou", "miou"), ("mean_dice", "mean_case_dice"))
    supports_superclasses = True

    def list_source(self, source: SourceConfig, need_masks: bool = True) -> list[Sample]:
        return list_samples(source, need_masks)

    def preflight(self, split: Split, mask_description: MaskDescription) -> None:
        """Labeled and test samples decoded fully; reference images verified whole (cheaply for PNG), their masks fully."""
        check_pretrained(self.run_config.model.pretrained, self.build_network())
        for sample in split.labeled + split.test:
            image = read_image(sample.image)
            read_mask(sample.mask, mask_description(sample), expected_size=image.shape[:2])  # type: ignore[arg-type]
        for sample in split.reference:
            size = verify_image(sample.image)
            if sample.mask is not None:
                read_mask(sample.mask, mask_description(sample), expected_size=size)
        ts = self.run_config.teacher_student
        if (ts.pseudo_labels == "super" or "super" in ts.compare_pseudo_labels) and not self.description.superclasses:
            raise AtsoError(
                f"teacher_student.pseudo_labels: 'super' needs 'superclasses' in the dataset description '{self.description.name}'"
            )

    def build_network(self) -> torch.nn.Module:
        model = self.run_config.model
        return build_model(model.name, self.description.num_classes, **model.options)

    def training_pair(
        self, sample_id: str, image: Path, target: Path, pseudo: bool, offset: int = 0,
        mask_description: DatasetDescription | None = None,
    ) -> TrainingPair:
        return TrainingPair(sample_id, image, target, pseudo, offset, mask_description=mask_description)

    def training_dataset(self, pairs: list[Any], student: bool, seed: int, part: Part) -> TrainingDataset:
        config = self.run_config
        scale, blur = config.train.augmentation(student=student)
        return TrainingDataset(
            pairs,
            self.description,
            config.data.input_size,
            Augmentation(scale, config.train.hflip, blur, self.description.ignore_index),
            batch_size=config.train.batch_size,
            seed=seed,
            labeled_share=config.train.labeled_share,
            mix=config.train.mix if student else "none",
            mix_probability=config.train.mix_probability,
            strong=StrongPhotometric.from_config(config.train.strong) if student else None,
        )

    def training_outputs(self, examples: int, iterations_here: int, seconds: float) -> dict[str, Any]:
        # Iterations trained by this process, not before a crash.
        images_per_second = iterations_here * self.run_config.train.batch_size / max(seconds, 1e-9)
        return {"images_per_second": round(images_per_second, 2)}

    def predictor(self, models: dict[str, torch.nn.Module], device: torch.device, flip: bool) -> Predictor:
        config = self.run_config
        runtime = config.runtime
        return Predictor(
            models, config.data.input_size, device, batch_size=config.evaluation.batch_size, flip=flip,
            num_workers=runtime.num_workers, amp=runtime.amp, quiet=runtime.quiet, amp_dtype=runtime.amp_dtype,
            channels_last=runtime.channels_last, compile=runtime.compile,
        )

    def file_predictor(
        self, models: dict[str, torch.nn.Module], info: ModelInfo, device: torch.device, batch_size: int,
        input_size: tuple[int, int] | None = None, quiet: bool = False,
    ) -> Predictor:
        return Predictor(models, input_size or info.input_size, device, batch_size=batch_size, quiet=quiet)

    def scores(self, names: list[str], ignore_index: int) -> Scores:
        return SegmentationScores(names, ignore_index)

    def read_truth(self, sample: Sample, description: DatasetDescription, shape: tuple[int, ...]) -> np.ndarray:
        return read_mask(sample.mask, description, expected_size=shape)  # type: ignore[arg-type]

    def read_labels(self, path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
        return read_label_map(path, self.description.num_classes, self.description.ignore_index)

    def write_prediction(
        self, output: Path, sample: Sample, prediction: Prediction, overlays: Path | None = None, fsync: bool = True
    ) -> tuple[Path, Path | None]:
        palette, ignore = self.description.color_palette(), self.description.ignore_index
        written = write_label_png(output / f"{sample.id}.png", prediction.labels, palette, ignore, fsync=fsync)
        if overlays is None:
            return written, None
        blended = overlay(read_image(sample.image), prediction.labels, palette, ignore_index=ignore)
        return written, write_rgb_png(overlays / f"{sample.id}.png", blended)
