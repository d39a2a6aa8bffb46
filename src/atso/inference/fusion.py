"""Fusing the per-view predictions of a volume into one label volume (RSTN: majority voting)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _check_same_shape(volumes: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    volumes = [np.asarray(volume) for volume in volumes]
    if not volumes:
        raise ValueError(f"need at least one {what}")
    shapes = {volume.shape for volume in volumes}
    if len(shapes) > 1:
        raise ValueError(f"all {what}s must have one shape, got {sorted(shapes)}")
    return volumes


def majority_vote(label_volumes: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """Give each voxel the class most views predicted.

    Ties go to the earliest view in ``label_volumes`` whose class is among the most voted: with the
    views in :data:`atso.data.slicing.VIEWS` order (axial, coronal, sagittal), two views that disagree
    give the axial view's class, and three views that all disagree give the axial view's class. (Two
    classes and three views never tie.)

    Args:
        label_volumes: one ``X x Y x Z`` label volume per view, in a fixed view order.
        num_classes: number of classes ``C``; every value must lie in ``0..C-1``.

    Returns:
        The fused labels, uint8 when ``C <= 256`` (int64 otherwise).

    Raises:
        ValueError: no volumes, shapes differ, or a value is not a class.
    """
    volumes = _check_same_shape(label_volumes, "label volume")
    for volume in volumes:
        if volume.size and (volume.dtype.kind not in "iub" or volume.min() < 0 or volume.max() >= num_classes):
            raise ValueError(f"label volumes must hold integer classes 0..{num_classes - 1}")
    counts = np.zeros((num_classes,) + volumes[0].shape, dtype=np.int32)
    for volume in volumes:
        for label in range(num_classes):
            counts[label] += volume == label
    most = counts.max(axis=0)
    fused = np.zeros(volumes[0].shape, dtype=np.uint8 if num_classes <= 256 else np.int64)
    for volume in reversed(volumes):  # the earliest view is applied last, so it wins a tie
        votes = np.take_along_axis(counts, volume[None].astype(np.int64), axis=0)[0]
        np.copyto(fused, volume, where=votes == most, casting="unsafe")
    return fused


def average_probabilities(prob_volumes: Sequence[np.ndarray]) -> np.ndarray:
    """The voxel-wise mean of per-view class probabilities, each ``K x X x Y x Z``; returns float32.

    Raises:
        ValueError: no volumes, or shapes differ.
    """
    volumes = _check_same_shape(prob_volumes, "probability volume")
    total = np.zeros(volumes[0].shape, dtype=np.float32)
    for volume in volumes:
        total += volume
    return total / np.float32(len(volumes))


def mean_probability(prob_volumes: Sequence[np.ndarray]) -> np.ndarray:
    """Fuse by averaging the views' class probabilities and taking the most likely class.

    The option to majority voting: it weighs a view's confidence, not only its choice. Ties go to
    the lower class index.

    Args:
        prob_volumes: one ``K x X x Y x Z`` probability volume per view.

    Returns:
        ``X x Y x Z`` labels, uint8 when ``K <= 256`` (int64 otherwise).
    """
    mean = average_probabilities(prob_volumes)
    labels = mean.argmax(axis=0)
    return labels.astype(np.uint8) if mean.shape[0] <= 256 else labels
