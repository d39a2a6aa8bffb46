"""2.5D slicing: a volume as a stack of 2D slices along one view, and per-slice outputs stacked back.

Views are named for a volume stored in RAS-like voxel order (``X`` left-right, ``Y`` posterior-anterior,
``Z`` inferior-superior, as most NIfTI files are; :attr:`atso.data.volumes.Volume.axis_codes` tells):

========  ==========  ================================
view      slice axis  one slice, ``H x W``
========  ==========  ================================
sagittal  0 (X)       ``data[x, :, :]``  -> ``Y x Z``
coronal   1 (Y)       ``data[:, y, :]``  -> ``X x Z``
axial     2 (Z)       ``data[:, :, z]``  -> ``X x Y``
========  ==========  ================================

The two remaining axes keep their order and direction (no rotation to a display orientation): a
network does not care, and :func:`stack_slices` is then a plain inverse. For a volume stored in another
order the names are only labels for axes 0, 1 and 2; slicing, stacking and fusion stay correct.
"""

from __future__ import annotations

import numpy as np

VIEWS = ("axial", "coronal", "sagittal")
VIEW_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def view_axis(view: str) -> int:
    """The voxel axis a view slices along.

    Raises:
        ValueError: an unknown view.
    """
    if view not in VIEW_AXIS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    return VIEW_AXIS[view]


def slice_volume(data: np.ndarray, view: str, context: int = 0) -> np.ndarray:
    """Cut an ``X x Y x Z`` volume into the slices of one view, with neighbours as channels.

    Args:
        data: the volume.
        view: ``axial``, ``coronal`` or ``sagittal``.
        context: neighbouring slices on each side given as extra channels; the volume's first and last
            slices are repeated beyond its ends.

    Returns:
        ``(S, C, H, W)`` with ``C = 2 * context + 1``; channel ``context`` is the slice itself and
        channel ``context + d`` the slice ``d`` steps further along the axis.

    Raises:
        ValueError: ``data`` is not 3D, or ``context`` is negative.
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"need an X x Y x Z volume, got shape {data.shape}")
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    slices = np.moveaxis(data, view_axis(view), 0)
    count = slices.shape[0]
    neighbours = np.clip(np.arange(count)[:, None] + np.arange(-context, context + 1)[None, :], 0, count - 1)
    return np.ascontiguousarray(slices[neighbours])


def stack_slices(slices: np.ndarray, view: str, shape: tuple[int, int, int]) -> np.ndarray:
    """Put per-slice outputs of one view back into the volume: the inverse of :func:`slice_volume`.

    Args:
        slices: ``(S, K, H, W)`` per-slice outputs (``K`` class probabilities, say) or ``(S, H, W)``
            per-slice label maps, in slice order.
        view: the view they were cut along.
        shape: ``(X, Y, Z)`` of the volume.

    Returns:
        ``(K, X, Y, Z)``, or ``(X, Y, Z)`` for ``(S, H, W)`` input.

    Raises:
        ValueError: the slices do not fit ``shape`` along ``view``.
    """
    slices = np.asarray(slices)
    axis = view_axis(view)
    shape = tuple(int(n) for n in shape)
    expected = (shape[axis],) + tuple(n for i, n in enumerate(shape) if i != axis)
    spatial = (slices.shape[0],) + slices.shape[-2:]
    if slices.ndim not in (3, 4) or spatial != expected:
        raise ValueError(
            f"{view} slices of a {shape} volume must be {expected[0]} x [K x] {expected[1]} x {expected[2]}, "
            f"got {slices.shape}"
        )
    if slices.ndim == 3:
        return np.ascontiguousarray(np.moveaxis(slices, 0, axis))
    return np.ascontiguousarray(np.moveaxis(slices, 0, axis + 1))


def select_training_slices(
    label_volume: np.ndarray,
    view: str,
    empty_ratio: float,
    rng: np.random.Generator,
    ignore_index: int = 255,
) -> np.ndarray:
    """Indices of the slices to train on: all slices with foreground, plus a share of the empty ones.

    A slice has foreground when any voxel is a class other than 0 (background) and ``ignore_index``.
    Keeping only some empty slices stops the many background-only slices of a scan from swamping the
    few that show the organ.

    Args:
        label_volume: ``X x Y x Z`` class indices.
        view: the view to slice along.
        empty_ratio: share of the empty slices kept (``0.1`` keeps ``round(0.1 * n_empty)`` of them).
        rng: draws which empty slices are kept; the same seed gives the same slices.
        ignore_index: label value that is not a class.

    Returns:
        Sorted int64 slice indices.

    Raises:
        ValueError: ``label_volume`` is not 3D or ``empty_ratio`` is outside [0, 1].
    """
    label_volume = np.asarray(label_volume)
    if label_volume.ndim != 3:
        raise ValueError(f"need an X x Y x Z label volume, got shape {label_volume.shape}")
    if not 0.0 <= empty_ratio <= 1.0:
        raise ValueError(f"empty_ratio must lie in [0, 1], got {empty_ratio}")
    axis = view_axis(view)
    foreground = (label_volume != 0) & (label_volume != ignore_index)
    other_axes = tuple(i for i in range(3) if i != axis)
    has_foreground = foreground.any(axis=other_axes)
    full = np.flatnonzero(has_foreground)
    empty = np.flatnonzero(~has_foreground)
    keep = int(round(empty_ratio * empty.size))
    kept_empty = rng.choice(empty, size=keep, replace=False) if keep else np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate([full, kept_empty]).astype(np.int64))
