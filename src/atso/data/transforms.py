"""Resizing, the paper's basic augmentations (scale + crop, flip, blur), students' strong ones, and normalisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from atso.config import StrongAugmentationConfig

# ImageNet statistics: what pretrained backbones expect, and harmless for networks trained from scratch.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 image to (height, width) bilinearly."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxW uint8 label map to (height, width) by nearest neighbour."""
    if labels.shape[:2] == tuple(size):
        return labels
    return np.asarray(Image.fromarray(labels).resize((size[1], size[0]), Image.NEAREST))


_MEAN_CHW = torch.from_numpy(MEAN).view(3, 1, 1)
_STD_CHW = torch.from_numpy(STD).view(3, 1, 1)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> normalised 3xHxW float32 tensor."""
    # In place on one float copy: 4x faster per training item than numpy's temporaries, and the same
    # float32 operations in the same order, so the same bits.
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    return tensor.div_(255.0).sub_(_MEAN_CHW).div_(_STD_CHW)


@dataclass(frozen=True)
class Augmentation:
    """Random rescale, crop/pad back to the input size, horizontal flip and Gaussian blur."""

    scale_range: tuple[float, float] = (0.75, 1.5)
    hflip: bool = True
    blur_probability: float = 0.0
    ignore_index: int = 255

    def __call__(
        self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one (image, labels) pair at the input size; output has the same size."""
        height, width = labels.shape
        scale = float(rng.uniform(*self.scale_range))
        scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
        image = resize_image(image, scaled)
        labels = resize_labels(labels, scaled)
        pad_h, pad_w = max(0, height - scaled[0]), max(0, width - scaled[1])
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
            labels = np.pad(labels, ((0, pad_h), (0, pad_w)), constant_values=self.ignore_index)
        top = int(rng.integers(0, image.shape[0] - height + 1))
        left = int(rng.integers(0, image.shape[1] - width + 1))
        image = image[top : top + height, left : left + width]
        labels = labels[top : top + height, left : left + width]
        flip = self.hflip and rng.random() < 0.5
        blur = rng.random() < self.blur_probability
        radius = float(rng.uniform(0.1, 2.0))
        if flip:
            image, labels = image[:, ::-1], labels[:, ::-1]
        if blur:
            image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).filter(ImageFilter.GaussianBlur(radius)))
        return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def cutmix_mask(size: tuple[int, int], rng: np.random.Generator, area: tuple[float, float] = (0.25, 0.5)) -> np.ndarray:
    """A random box covering a share of the image drawn from ``area`` (CutMix, French et al. 2019)."""
    height, width = size
    share = float(rng.uniform(*area))
    ratio = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # box aspect ratio
    box_h = min(height, max(1, round(np.sqrt(share * height * width * ratio))))
    box_w = min(width, max(1, round(np.sqrt(share * height * width / ratio))))
    top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
    mask = np.zeros(size, dtype=bool)
    mask[top : top + box_h, left : left + box_w] = True
    return mask


def classmix_mask(labels: np.ndarray, rng: np.random.Generator, ignore_index: int = 255) -> np.ndarray:
    """The pixels of half the classes present in ``labels``, chosen at random (ClassMix, Olsson et al. 2021)."""
    present = np.unique(labels[labels != ignore_index])
    if present.size == 0:
        return np.zeros(labels.shape, dtype=bool)
    chosen = rng.choice(present, size=max(1, (present.size + 1) // 2), replace=False)
    return np.isin(labels, chosen)


def mix_pair(
    image: np.ndarray, labels: np.ndarray, other_image: np.ndarray, other_labels: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``other`` onto a sample where ``mask`` holds: image and labels alike."""
    return np.where(mask[..., None], other_image, image), np.where(mask, other_labels, labels)


def perturb_pseudo(
    image: Any,
    labels: Any,
    key: tuple[int, int, int],
    strong: Callable[[Any, np.random.Generator], Any] | None,
    mix: str,
    mix_probability: float,
    partner: Callable[[np.random.Generator], tuple[Any, Any]],
    paste: Callable[[Any, Any, Any, Any, np.ndarray], tuple[Any, Any]],
    ignore_index: int = 255,
) -> tuple[Any, Any]:
    """A pseudo-labeled sample's strong view: ``strong`` noise, then (``mix``) a partner pasted in.

    Images and volume slices share it; they differ only in their arrays. Each draw has its own seeded
    stream keyed by ``(seed, iteration, slot)``, so an item is the same on every call and every rank.

    Args:
        partner: draws another pseudo-labeled sample (weakly augmented) from the given generator.
        paste: pastes the partner onto the sample where a boolean mask holds.
    """
    seed, iteration, slot = key
    if strong is not None:
        image = strong(image, np.random.default_rng([seed, iteration, slot, 3]))
    if mix == "none":
        return image, labels
    mix_rng = np.random.default_rng([seed, iteration, slot, 2])
    if mix_probability < 1 and mix_rng.random() >= mix_probability:
        return image, labels
    other_image, other_labels = partner(mix_rng)
    if strong is not None:
        other_image = strong(other_image, np.random.default_rng([seed, iteration, slot, 4]))
    if mix == "cutmix":
        mask = cutmix_mask(tuple(labels.shape), mix_rng)
    else:
        mask = classmix_mask(np.asarray(other_labels), mix_rng, ignore_index)
    return paste(image, labels, other_image, other_labels, mask)


@dataclass(frozen=True)
class StrongPhotometric:
    """Colour jitter, grayscale and blur of a uint8 RGB image: the strong view of a pseudo-labeled image.

    A student that sees its teacher's labels on the very images the teacher saw learns to copy them
    (lazy mimicking); perturbing what the student sees, never the label, is what makes offline
    self-training pay (Noisy Student; ST++ and UniMatch's colour jitter 0.5, grayscale 0.2, blur 0.5).

    Args:
        jitter: brightness, contrast and saturation factors are drawn from ``[1 - jitter, 1 + jitter]``,
            the hue shift from ``[-jitter / 2, jitter / 2]`` of a turn; applied in a random order.
        jitter_probability: chance that an image is jittered at all.
        grayscale_probability: chance that it is turned gray.
        blur_probability: chance of a Gaussian blur of radius 0.1-2 pixels.
    """

    jitter: float = 0.5
    jitter_probability: float = 0.8
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5

    @classmethod
    def from_config(cls, strong: StrongAugmentationConfig) -> StrongPhotometric | None:
        """The images' strong view a config asks for; None where it is switched off."""
        if not strong.enabled:
            return None
        return cls(strong.jitter, strong.jitter_probability, strong.grayscale_probability, strong.blur_probability)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The perturbed image; the geometry is unchanged, so the labels still fit."""
        # Every draw is made whether or not it is used, so one option never shifts another's randomness.
        jitter = rng.random() < self.jitter_probability
        order = rng.permutation(4)
        factors = rng.uniform(max(0.0, 1.0 - self.jitter), 1.0 + self.jitter, size=3)
        hue = float(rng.uniform(-self.jitter / 2, self.jitter / 2))
        gray = rng.random() < self.grayscale_probability
        blur = rng.random() < self.blur_probability
        radius = float(rng.uniform(0.1, 2.0))
        picture = Image.fromarray(np.ascontiguousarray(image))
        if jitter and self.jitter > 0:
            for step in order:
                if step == 3:
                    picture = _shift_hue(picture, hue)
                else:
                    enhancer = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)[step]
                    picture = enhancer(picture).enhance(float(factors[step]))
        if gray:
            picture = picture.convert("L").convert("RGB")
        if blur:
            picture = picture.filter(ImageFilter.GaussianBlur(radius))
        return np.asarray(picture)


def _shift_hue(picture: Image.Image, turn: float) -> Image.Image:
    """Rotate the hue of an RGB image by ``turn`` of a full circle."""
    hsv = np.asarray(picture.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(turn * 255))) % 256
    return Image.fromarray(hsv, mode="HSV").convert("RGB")
