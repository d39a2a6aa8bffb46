"""Resampling volumes: one slice spacing along the long axis for every scan, and outputs mapped back.

Scans differ most in the distance between slices (0.6 mm to 5 mm along the long axis of CT), so the
paper normalises that spacing for training and testing and rescales the output to each scan's own
grid before scoring (section 4.2). Both directions use voxel-centre alignment (``align_corners=False``):
``linear`` is torch's trilinear interpolation, for images and class probabilities; ``nearest`` picks
the source voxel whose centre is nearest, for labels, and keeps their values and dtype. Enlarging by
an integer factor with ``nearest`` and shrinking back gives the labels back exactly.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

ORDERS = ("linear", "nearest")


def spacing_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: float, axis: int = 2
) -> tuple[int, int, int]:
    """The ``X x Y x Z`` shape after resampling ``axis`` to ``target_spacing`` (at least one slice)."""
    if len(shape) != 3 or len(spacing) != 3:
        raise ValueError(f"need a 3D shape and spacing, got {tuple(shape)} and {tuple(spacing)}")
    if target_spacing <= 0 or spacing[axis] <= 0:
        raise ValueError(f"spacings must be positive, got {spacing[axis]} and target {target_spacing}")
    new_shape = [int(n) for n in shape]
    new_shape[axis] = max(1, int(round(shape[axis] * float(spacing[axis]) / float(target_spacing))))
    return tuple(new_shape)  # type: ignore[return-value]


def resample_to_spacing(
    data: np.ndarray,
    spacing: Sequence[float],
    target_spacing: float,
    order: Literal["linear", "nearest"] = "linear",
    axis: int = 2,
) -> np.ndarray:
    """Resample one axis of a volume to ``target_spacing``; the other axes keep their voxels.

    Args:
        data: ``X x Y x Z``, or ``K x X x Y x Z`` (channels such as class probabilities).
        spacing: the voxel size along the three spatial axes (``Volume.spacing``).
        target_spacing: the voxel size wanted along ``axis``.
        order: ``linear`` (images, probabilities; returns float32) or ``nearest`` (labels).
        axis: the spatial axis to resample, 2 (the long axis of an axial scan) by default.

    Returns:
        The resampled array; its length along ``axis`` is ``round(n * spacing / target_spacing)``.
    """
    data = np.asarray(data)
    return resample_to_shape(data, spacing_shape(data.shape[-3:], spacing, target_spacing, axis), order)


def _nearest_indices(source: int, target: int) -> np.ndarray:
    """For each target voxel, the source voxel whose centre is nearest (torch's ``nearest-exact``)."""
    return np.minimum(((np.arange(target) + 0.5) * (source / target)).astype(np.int64), source - 1)


def resample_to_shape(
    data: np.ndarray, shape: Sequence[int], order: Literal["linear", "nearest"] = "linear"
) -> np.ndarray:
    """Resample a volume onto an ``X x Y x Z`` grid covering the same extent.

    Args:
        data: ``X x Y x Z``, or ``K x X x Y x Z``; channels are resampled alike.
        shape: the spatial shape wanted, e.g. the original scan's to map a prediction back.
        order: ``linear`` returns float32; ``nearest`` keeps the dtype.

    Raises:
        ValueError: ``data`` is not 3D or 4D, ``shape`` is not three positive sizes, or an unknown order.
    """
    data = np.asarray(data)
    shape = tuple(int(n) for n in shape)
    if data.ndim not in (3, 4):
        raise ValueError(f"need an X x Y x Z or K x X x Y x Z array, got shape {data.shape}")
    if len(shape) != 3 or min(shape) < 1 or min(data.shape) < 1:
        raise ValueError(f"cannot resample shape {data.shape} to {shape}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order == "nearest":
        if data.shape[-3:] == shape:
            return data.copy()
        index = [_nearest_indices(source, target) for source, target in zip(data.shape[-3:], shape)]
        return np.ascontiguousarray(data[(...,) + np.ix_(*index)])
    if data.shape[-3:] == shape:
        return data.astype(np.float32)
    channels = data if data.ndim == 4 else data[None]
    tensor = torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32))[None]
    with torch.no_grad():
        resampled = F.interpolate(tensor, size=shape, mode="trilinear", align_corners=False)[0].numpy()
    return resampled if data.ndim == 4 else resampled[0]
