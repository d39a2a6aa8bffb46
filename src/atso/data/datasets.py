"""Torch datasets: training pairs drawn deterministically per iteration, and images for inference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from atso.data.description import DatasetDescription
from atso.data.images import read_image, read_label_map, read_mask
from atso.data.samples import Sample
from atso.data.transforms import (
    Augmentation,
    StrongPhotometric,
    mix_pair,
    perturb_pseudo,
    resize_image,
    resize_labels,
    to_tensor,
)


def stream_index(seed: int, iteration: int, slot: int, batch_size: int, count: int, stream: int | None = None) -> int:
    """Which of ``count`` items fills ``slot`` of the batch at ``iteration``: each epoch a seeded permutation.

    ``stream`` tells apart several streams of one seed (the labeled and the pseudo-labeled part of a batch).
    """
    epoch, offset = divmod(iteration * batch_size + slot, count)
    key = [seed, epoch] if stream is None else [seed, stream, epoch]
    return int(np.random.default_rng(key).permutation(count)[offset])


class BatchStream:
    """Which item fills each slot of each batch: seeded epochs, optionally a fixed share from S.

    Args:
        seed: the stream's seed.
        batch_size: slots per batch.
        from_labeled: per item, whether its target is ground truth (S) rather than a pseudo-label.
        labeled_share: share of each batch drawn from the S items (at least one slot, at most all
            but one), the rest from the pseudo-labeled ones; None pools all items.
    """

    def __init__(self, seed: int, batch_size: int, from_labeled: list[bool], labeled_share: float | None = None) -> None:
        self.seed, self.batch_size, self.count = seed, batch_size, len(from_labeled)
        self.labeled = [i for i, labeled in enumerate(from_labeled) if labeled]
        self.pseudo = [i for i, labeled in enumerate(from_labeled) if not labeled]
        self.labeled_slots = 0
        if labeled_share is not None and self.labeled and self.pseudo and batch_size > 1:
            self.labeled_slots = min(batch_size - 1, max(1, round(labeled_share * batch_size)))

    def index(self, iteration: int, slot: int) -> int:
        if not self.labeled_slots:
            return stream_index(self.seed, iteration, slot, self.batch_size, self.count)
        if slot < self.labeled_slots:
            return self.labeled[stream_index(self.seed, iteration, slot, self.labeled_slots, len(self.labeled), 1)]
        pseudo_slots = self.batch_size - self.labeled_slots
        return self.pseudo[stream_index(self.seed, iteration, slot - self.labeled_slots, pseudo_slots, len(self.pseudo), 2)]


@dataclass(frozen=True)
class TrainingPair:
    """An image and the target a student learns from: a ground-truth mask or a pseudo-label map."""

    sample_id: str
    image: Path
    target: Path
    target_is_pseudo: bool
    target_offset: int = 0  # added to pseudo-label values: super-class g is trained as num_classes + g
    mask_description: DatasetDescription | None = None  # a source's own label map onto the run's classes


class TrainingDataset(Dataset):
    """Item ``(iteration, slot)`` of a run's batch stream, the same on every call and after a resume.

    Each epoch is a seeded permutation of the pairs, so where training stops and restarts changes nothing.
    Images are resized once to the input size and kept in memory (``cache``).

    With ``mix`` (``cutmix`` or ``classmix``) a pseudo-labeled item gets, with ``mix_probability``, a box or
    half the classes of another pseudo-labeled item pasted in: the strong augmentation the paper's appendix
    adds to ATSO. With ``strong``, every pseudo-labeled image (and its mixing partner) is also jittered in
    colour, grayed or blurred; ground-truth items keep the weak pipeline alone.

    With ``labeled_share``, that share of every batch comes from the ground-truth pairs and the rest
    from the pseudo-labeled ones, each its own seeded stream, so a small S is not diluted by a large R.
    """

    def __init__(
        self,
        pairs: list[TrainingPair],
        description: DatasetDescription,
        input_size: tuple[int, int],
        augmentation: Augmentation,
        batch_size: int,
        seed: int,
        cache: bool = True,
        labeled_share: float | None = None,
        mix: str = "none",
        mix_probability: float = 1.0,
        strong: StrongPhotometric | None = None,
    ) -> None:
        if not pairs:
            raise ValueError("a training set needs at least one pair")
        if mix not in ("none", "cutmix", "classmix"):
            raise ValueError(f"mix must be none, cutmix or classmix, got {mix!r}")
        self.mix = mix
        self.mix_probability = mix_probability
        self.strong = strong
        self.stream = BatchStream(seed, batch_size, [not pair.target_is_pseudo for pair in pairs], labeled_share)
        self.pseudo = self.stream.pseudo
        self.pairs = pairs
        self.description = description
        self.input_size = tuple(input_size)
        self.augmentation = augmentation
        self.batch_size = batch_size
        self.seed = seed
        self.cache = cache
        self._loaded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def pair_index(self, iteration: int, slot: int) -> int:
        """Which pair fills ``slot`` of the batch at ``iteration``."""
        return self.stream.index(iteration, slot)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and target of one pair at the input size, uint8."""
        if index in self._loaded:
            return self._loaded[index]
        pair = self.pairs[index]
        image = read_image(pair.image)
        if pair.target_is_pseudo:
            ignore = self.description.ignore_index
            target = read_label_map(pair.target, self.description.num_classes, ignore)
            if target.shape != image.shape[:2]:
                target = resize_labels(target, image.shape[:2])
            if pair.target_offset:
                target = np.where(target == ignore, ignore, target.astype(np.int64) + pair.target_offset)
        else:
            description = pair.mask_description or self.description
            target = read_mask(pair.target, description, expected_size=image.shape[:2])
        loaded = (resize_image(image, self.input_size), resize_labels(target.astype(np.uint8), self.input_size))
        if self.cache:
            self._loaded[index] = loaded
        return loaded

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        iteration, slot = key
        index = self.pair_index(iteration, slot)
        image, target = self.load(index)
        rng = np.random.default_rng([self.seed, iteration, slot, 1])
        image, target = self.augmentation(image, target, rng)
        if self.pairs[index].target_is_pseudo:
            image, target = perturb_pseudo(
                image, target, (self.seed, iteration, slot), self.strong, self.mix, self.mix_probability,
                partner=lambda rng: self.augmentation(*self.load(self.pseudo[int(rng.integers(len(self.pseudo)))]), rng),
                paste=mix_pair, ignore_index=self.description.ignore_index,
            )
        return to_tensor(image), torch.from_numpy(target.astype(np.int64))


class IterationBatches(torch.utils.data.Sampler):
    """Batch sampler yielding ``[(iteration, slot), ...]`` from ``start`` to ``stop``."""

    def __init__(self, start: int, stop: int, batch_size: int, slots: range | None = None) -> None:
        self.start, self.stop, self.batch_size = start, stop, batch_size
        self.slots = slots if slots is not None else range(batch_size)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for iteration in range(self.start, self.stop):
            yield [(iteration, slot) for slot in self.slots]


class InferenceDataset(Dataset):
    """Images resized to the input size for prediction, with each one's original (height, width)."""

    def __init__(self, samples: list[Sample], input_size: tuple[int, int]) -> None:
        self.samples = samples
        self.input_size = tuple(input_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        image = read_image(self.samples[index].image)
        height, width = image.shape[:2]
        return to_tensor(resize_image(image, self.input_size)), height, width, index
