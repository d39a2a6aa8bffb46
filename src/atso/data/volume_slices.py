"""Volumes as training slices: intensity and spacing preparation, and the slice training dataset.

Training and inference prepare a volume the same way (:func:`prepare_image`): intensities normalised
as the config says, then the long axis resampled to ``slice_spacing``. Slices of every view are resized
to the input size, so one batch holds slices of volumes of different shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from atso.config import StrongAugmentationConfig, VolumeConfig
from atso.data.datasets import BatchStream
from atso.data.description import DatasetDescription
from atso.data.images import _check_labels
from atso.data.resampling import resample_to_spacing
from atso.data.slicing import select_training_slices, slice_volume
from atso.data.transforms import perturb_pseudo
from atso.data.volumes import Volume, normalise, read_label_volume, read_volume
from atso.errors import AtsoError


def prepare_image(volume: Volume, settings: VolumeConfig) -> np.ndarray:
    """A scan's intensities normalised and its long axis at ``slice_spacing``: what the networks see."""
    data = normalise(volume.data, settings.intensity, settings.window)
    if settings.slice_spacing is not None:
        data = resample_to_spacing(data, volume.spacing, settings.slice_spacing, "linear")
    return data


def prepare_labels(labels: np.ndarray, spacing: tuple[float, float, float], settings: VolumeConfig) -> np.ndarray:
    """Labels on the grid of :func:`prepare_image` (nearest neighbour keeps class values)."""
    if settings.slice_spacing is not None:
        labels = resample_to_spacing(labels, spacing, settings.slice_spacing, "nearest")
    return labels


def resize_slices(slices: torch.Tensor, size: tuple[int, int], labels: bool = False) -> torch.Tensor:
    """Resize ``(S, C, H, W)`` slices to ``size``: bilinear with antialiasing, or nearest for labels."""
    if tuple(slices.shape[-2:]) == tuple(size):
        return slices
    if labels:
        return F.interpolate(slices.float(), size=tuple(size), mode="nearest-exact").to(slices.dtype)
    return F.interpolate(slices, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def read_pseudo_label_volume(
    path: Path, num_classes: int, ignore_index: int, shape: tuple[int, int, int] | None = None
) -> np.ndarray:
    """A fused pseudo-label volume written by atso, checked against the classes and, given its scan's shape, its grid."""
    volume = read_volume(path, kind="label")
    if shape is not None and volume.shape != tuple(shape):
        raise AtsoError(f"{path}: pseudo-label is {volume.shape}, its scan {shape}; delete it so it is labeled again")
    return _check_labels(path, volume.data, num_classes, ignore_index, "delete it so it is labeled again")


@dataclass(frozen=True)
class VolumePair:
    """A scan and the volume a network learns from: its ground truth or a fused pseudo-label."""

    sample_id: str
    image: Path
    target: Path
    target_is_pseudo: bool
    mask_description: DatasetDescription | None = None


@dataclass(frozen=True)
class SliceAugmentation:
    """Random rescale with crop/pad back to the slice size, and an optional flip, for float slices."""

    scale_range: tuple[float, float] = (0.75, 1.25)
    hflip: bool = False
    ignore_index: int = 255

    def __call__(self, image: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one ``(C, H, W)`` slice and its ``(H, W)`` labels; the output keeps the size."""
        height, width = labels.shape
        scale = float(rng.uniform(*self.scale_range))
        scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = F.interpolate(image[None], size=scaled, mode="bilinear", align_corners=False)[0]
        labels = F.interpolate(labels[None, None].float(), size=scaled, mode="nearest-exact")[0, 0].long()
        pad_h, pad_w = max(0, height - scaled[0]), max(0, width - scaled[1])
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h))
            labels = F.pad(labels, (0, pad_w, 0, pad_h), value=self.ignore_index)
        top = int(rng.integers(0, image.shape[1] - height + 1))
        left = int(rng.integers(0, image.shape[2] - width + 1))
        image = image[:, top : top + height, left : left + width]
        labels = labels[top : top + height, left : left + width]
        if self.hflip and rng.random() < 0.5:
            image, labels = image.flip(-1), labels.flip(-1)
        return image.contiguous(), labels.contiguous()


@dataclass(frozen=True)
class SliceIntensityJitter:
    """Intensity gain, bias, gamma and noise of a float slice: the strong view of a pseudo-labeled slice.

    MRI and CT have no colour to jitter; what varies between scanners and protocols is the intensity
    scale, offset and curve, and the noise (nnU-Net's intensity augmentations, drawn more often here).
    Bias and noise are in units of the slice's own standard deviation, so they mean the same after any
    normalisation.

    Args:
        gain: multiply by a factor from ``[1 - gain, 1 + gain]``.
        bias: add an offset from ``[-bias, bias]`` standard deviations.
        gamma: raise the slice, rescaled to [0, 1], to a power from this range, then scale it back.
        noise: add Gaussian noise of a standard deviation from ``[0, noise]`` standard deviations.
        probability: chance of each of the four, drawn independently.
    """

    gain: float = 0.25
    bias: float = 0.25
    gamma: tuple[float, float] = (0.7, 1.5)
    noise: float = 0.1
    probability: float = 0.8

    @classmethod
    def from_config(cls, strong: StrongAugmentationConfig) -> SliceIntensityJitter | None:
        """The slices' strong view a config asks for; None where it is switched off."""
        if not strong.enabled:
            return None
        return cls(strong.gain, strong.bias, tuple(strong.gamma), strong.noise, strong.intensity_probability)

    def __call__(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The perturbed ``(C, H, W)`` slice; the geometry is unchanged, so the labels still fit."""
        # Every draw is made whether or not it is used, so one option never shifts another's randomness.
        chosen = rng.random(4) < self.probability
        gain = float(rng.uniform(1.0 - self.gain, 1.0 + self.gain))
        bias = float(rng.uniform(-self.bias, self.bias))
        power = float(rng.uniform(*self.gamma))
        sigma = float(rng.uniform(0.0, self.noise))
        noise_seed = int(rng.integers(2**31))
        scale = float(image.std()) or 1.0
        image = image.clone()
        if chosen[2]:
            low, high = float(image.min()), float(image.max())
            if high > low:
                image = ((image - low) / (high - low)).pow(power) * (high - low) + low
        if chosen[0]:
            image = image * gain
        if chosen[1]:
            image = image + bias * scale
        if chosen[3] and sigma > 0:
            generator = torch.Generator().manual_seed(noise_seed)
            image = image + torch.randn(image.shape, generator=generator, dtype=image.dtype) * (sigma * scale)
        return image


class SliceTrainingDataset(Dataset):
    """Item ``(iteration, slot)`` of a batch stream over the training slices of some views of some volumes.

    Every slice with foreground is kept, plus a seeded share (``empty_ratio``) of the background-only
    ones; slices are cut once, resized to the input size and kept in memory. ``labeled_share``, ``mix``,
    ``mix_probability`` and ``strong`` (here a :class:`SliceIntensityJitter`) as in
    :class:`atso.data.datasets.TrainingDataset`: they perturb the slices of pseudo-labeled volumes only.
    """

    def __init__(
        self,
        pairs: list[VolumePair],
        description: DatasetDescription,
        settings: VolumeConfig,
        views: list[str],
        input_size: tuple[int, int],
        augmentation: SliceAugmentation,
        batch_size: int,
        seed: int,
        labeled_share: float | None = None,
        mix: str = "none",
        mix_probability: float = 1.0,
        strong: SliceIntensityJitter | None = None,
    ) -> None:
        if not pairs:
            raise ValueError("a training set needs at least one volume")
        if mix not in ("none", "cutmix", "classmix"):
            raise ValueError(f"mix must be none, cutmix or classmix, got {mix!r}")
        self.mix, self.mix_probability, self.strong = mix, mix_probability, strong
        self.description = description
        self.batch_size = batch_size
        self.seed = seed
        self.augmentation = augmentation
        images, labels, from_labeled = [], [], []
        for number, pair in enumerate(pairs):
            volume = read_volume(pair.image, kind="image")
            if pair.target_is_pseudo:
                target = read_pseudo_label_volume(pair.target, description.num_classes, description.ignore_index, volume.shape)
            else:
                target = read_label_volume(pair.target, pair.mask_description or description, volume).data
            data = prepare_image(volume, settings)
            target = prepare_labels(target, volume.spacing, settings)
            for view_number, view in enumerate(views):
                rng = np.random.default_rng([seed, number, view_number])
                chosen = select_training_slices(target, view, settings.empty_ratio, rng, description.ignore_index)
                if chosen.size == 0:
                    continue
                image_slices = torch.from_numpy(slice_volume(data, view, settings.context)[chosen])
                label_slices = torch.from_numpy(slice_volume(target, view)[chosen])
                images.append(resize_slices(image_slices, input_size).numpy())
                labels.append(resize_slices(label_slices, input_size, labels=True)[:, 0].numpy().astype(np.uint8))
                from_labeled += [not pair.target_is_pseudo] * int(chosen.size)
        if not images:
            raise AtsoError(
                f"{pairs[0].target}: no training slices (no foreground and data.volume.empty_ratio is 0); raise empty_ratio"
            )
        self.images = np.concatenate(images)
        self.labels = np.concatenate(labels)
        self.stream = BatchStream(seed, batch_size, from_labeled, labeled_share)
        self._pseudo_set = frozenset(self.stream.pseudo)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        iteration, slot = key
        index = self.stream.index(iteration, slot)
        rng = np.random.default_rng([self.seed, iteration, slot, 1])
        image, labels = self._slice(index, rng)
        if index in self._pseudo_set:
            image, labels = perturb_pseudo(
                image, labels, (self.seed, iteration, slot), self.strong, self.mix, self.mix_probability,
                partner=lambda rng: self._slice(self.stream.pseudo[int(rng.integers(len(self.stream.pseudo)))], rng),
                paste=_paste_slice, ignore_index=self.description.ignore_index,
            )
        return image, labels

    def _slice(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.images[index])
        labels = torch.from_numpy(self.labels[index].astype(np.int64))
        return self.augmentation(image, labels, rng)


def _paste_slice(
    image: torch.Tensor, labels: torch.Tensor, other_image: torch.Tensor, other_labels: torch.Tensor, mask: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste ``other`` onto a ``(C, H, W)`` slice and its labels where ``mask`` holds."""
    where = torch.from_numpy(mask)
    return torch.where(where[None], other_image, image), torch.where(where, other_labels, labels)
