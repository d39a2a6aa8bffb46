"""Reading and writing 3D volumes (NIfTI, through nibabel) with checks that name the file.

A volume is an ``X x Y x Z`` array in voxel order plus the affine and header it came with; atso never
reorients it, so a label written with :func:`write_volume` lies on its image's grid in any viewer.
Images are read as float32 with the file's ``scl_slope`` / ``scl_inter`` applied; labels are read as
uint8 class values (integers 0..255, like 2D masks).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from atso.data.description import DatasetDescription
from atso.data.images import _check_labels
from atso.errors import AtsoError
from atso.storage import atomic_write

VOLUME_SUFFIXES = (".nii.gz", ".nii")
NORMALISE_MODES = ("ct", "zscore", "none")
# Abdominal soft-tissue window in Hounsfield units, as RSTN uses for the pancreas.
CT_WINDOW = (-100.0, 240.0)

# What nibabel, gzip and zlib raise for a file that is not NIfTI, truncated or damaged.
_READ_ERRORS = (ImageFileError, OSError, EOFError, ValueError, zlib.error)
# A label stored as float must be integral up to this much rounding noise.
_INTEGRAL_TOLERANCE = 1e-3


@dataclass
class Volume:
    """One volume: ``data`` is ``X x Y x Z`` (float32 image or uint8 labels) on the grid of ``affine``."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along axes 0, 1, 2 in the header's units (usually mm)."""
        return tuple(float(z) for z in self.header.get_zooms()[:3])  # type: ignore[return-value]

    @property
    def axis_codes(self) -> tuple[str, str, str]:
        """Where the voxel axes point (``('R', 'A', 'S')`` for a RAS volume); names the views' anatomy."""
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]


def volume_id(path: str | Path, suffix: str = "") -> str:
    """The id of a volume file: its name without ``.nii.gz`` / ``.nii`` and without ``suffix``."""
    name = Path(path).name
    for extension in VOLUME_SUFFIXES:
        if name.lower().endswith(extension):
            name = name[: -len(extension)]
            break
    if suffix and name.endswith(suffix):
        name = name[: -len(suffix)]
    return name


def is_volume_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES) and not path.name.startswith("._")


def read_volume(path: str | Path, kind: Literal["image", "label"] = "image") -> Volume:
    """Read a 3D NIfTI volume (``.nii`` or ``.nii.gz``).

    A 4D file whose trailing axes have length 1 is read as 3D.

    Args:
        path: the file.
        kind: ``image`` reads float32 with ``scl_slope`` / ``scl_inter`` applied; ``label`` reads uint8
            class values, which must be integers in 0..255.

    Raises:
        AtsoError: the file is missing, not NIfTI, truncated or damaged, not 3D, holds non-finite
            intensities, or (labels) holds values that are not integers in 0..255.
    """
    path = Path(path)
    what = "image volume" if kind == "image" else "label volume"
    if kind not in ("image", "label"):
        raise ValueError(f"kind must be 'image' or 'label', got {kind!r}")
    if not path.is_file():
        raise AtsoError(f"{path}: {what} file not found; check the data folder and dataset.json")
    if not path.name.lower().endswith(VOLUME_SUFFIXES):
        raise AtsoError(f"{path}: not a NIfTI file; atso reads 3D volumes as .nii or .nii.gz, convert it")
    try:
        img = nib.load(path)
        shape = tuple(int(n) for n in img.shape)
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) != 3:
            fix = (
                "save 2D slices as PNG images for a 2D dataset, or stack them into one 3D file"
                if len(shape) < 3
                else "atso reads one single-channel 3D volume per file; split the channels or time points into files"
            )
            raise AtsoError(f"{path}: expected a 3D volume, got shape {shape}; {fix}")
        if kind == "image":
            data = img.get_fdata(dtype=np.float32).reshape(shape)
        else:
            data = np.asanyarray(img.dataobj).reshape(shape)
    except _READ_ERRORS as exc:
        if isinstance(exc, ImageFileError):  # its message only repeats the path
            reason = "not NIfTI, or its header is damaged"
        else:
            reason = str(exc).replace(str(path), "").strip(" :") or exc.__class__.__name__
        raise AtsoError(f"{path}: cannot read {what} ({reason}); replace or remove the file") from exc
    if kind == "image":
        if not np.isfinite(data).all():
            raise AtsoError(f"{path}: image volume holds NaN or infinite values; fix or remove the file")
    else:
        data = _integral_labels(path, data)
    return Volume(data=data, affine=np.array(img.affine, dtype=np.float64), header=img.header, path=path)


def _integral_labels(path: Path, data: np.ndarray) -> np.ndarray:
    """Labels as uint8, after checking they are integers in 0..255 (float files may carry rounding noise)."""
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise AtsoError(f"{path}: label volume holds NaN or infinite values; save integer class indices")
        rounded = np.rint(data)
        if np.abs(data - rounded).max(initial=0.0) > _INTEGRAL_TOLERANCE:
            raise AtsoError(
                f"{path}: label volume holds non-integer values (an image or interpolated labels?); "
                "save integer class indices"
            )
        data = rounded
    elif data.dtype.kind not in "iub":
        raise AtsoError(f"{path}: label volume has data type {data.dtype}, not integer class indices")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise AtsoError(
            f"{path}: label volume holds values {data.min():g}..{data.max():g}, beyond 0..255; "
            "save class indices (remap raw values with 'remap' in the dataset description)"
        )
    return data.astype(np.uint8)


AFFINE_TOLERANCE = 1e-3  # millimetres (and direction cosines): float32 headers round well below this


def check_same_grid(path: str | Path, label: Volume, image: Volume) -> None:
    """A label must lie on its scan's voxel grid in space too: same affine within :data:`AFFINE_TOLERANCE`.

    Raises:
        AtsoError: naming the label file, the largest difference and the fix.
    """
    difference = float(np.abs(np.asarray(label.affine) - np.asarray(image.affine)).max())
    if not difference <= AFFINE_TOLERANCE:
        raise AtsoError(
            f"{path}: label volume's affine differs from its image's ({image.path}) by up to {difference:.4g} "
            f"(tolerance {AFFINE_TOLERANCE:g}); the label is not on its scan's grid: resample it onto the scan "
            "or save it with the scan's affine"
        )


def read_label_volume(
    path: str | Path, description: DatasetDescription, expected_shape: "tuple[int, int, int] | Volume | None" = None
) -> Volume:
    """Read a reference label volume as uint8 class indices, with ``ignore_index`` where unscored.

    Args:
        path: the label file.
        description: the label space: ``remap`` is applied, then every value must be a class or
            ``ignore_index``. Volumes need ``mask_format: index``.
        expected_shape: ``(X, Y, Z)`` of the label's image, checked when given; or the image itself,
            whose affine is then checked too (:func:`check_same_grid`).

    Raises:
        AtsoError: as :func:`read_volume`, or the shape differs from the image's, or a value (after
            ``remap``) is neither a class nor the ignore index.
    """
    if description.mask_format != "index":
        raise AtsoError(
            f"{path}: label volumes hold class indices, but the dataset description says mask_format: "
            f"{description.mask_format}; set mask_format: index"
        )
    volume = read_volume(path, kind="label")
    if isinstance(expected_shape, Volume):
        image, expected_shape = expected_shape, expected_shape.shape
        if volume.shape == tuple(expected_shape):
            check_same_grid(path, volume, image)
    if expected_shape is not None and volume.shape != tuple(expected_shape):
        raise AtsoError(
            f"{path}: label volume is {'x'.join(map(str, volume.shape))} but its image is "
            f"{'x'.join(map(str, expected_shape))}; labels must lie on their image's voxel grid"
        )
    labels = description.lookup_table()[volume.data]
    volume.data = _check_labels(
        path, labels, description.num_classes, description.ignore_index,
        "add them to 'remap' in the dataset description or fix the label volume",
    )
    return volume


def write_volume(path: str | Path, data: np.ndarray, like: Volume, fsync: bool = True) -> Path:
    """Atomically write ``data`` as NIfTI on the grid of ``like`` (same affine and header).

    Integer data (labels) is written as uint8, anything else as float32; the scale is reset so the
    file holds the values themselves. The file is gzipped when ``path`` ends in ``.nii.gz``. With
    ``fsync=False`` the caller flushes it later (:func:`atso.storage.fsync_files`).

    Raises:
        ValueError: ``data`` is not shaped like ``like``, ``path`` is not ``.nii`` / ``.nii.gz``, or
            integer data lies outside 0..255.
        AtsoError: the file cannot be written.
    """
    path = Path(path)
    data = np.asarray(data)
    if data.shape != like.data.shape:
        raise ValueError(f"data shape {data.shape} differs from the reference volume's {like.data.shape}")
    if not path.name.lower().endswith(VOLUME_SUFFIXES):
        raise ValueError(f"{path}: a volume is written as .nii or .nii.gz")
    if data.dtype.kind in "iub":
        if data.size and (data.min() < 0 or data.max() > 255):
            raise ValueError(f"labels must lie in 0..255 to fit uint8, got {data.min()}..{data.max()}")
        data = data.astype(np.uint8)
    else:
        data = data.astype(np.float32)
    header = like.header.copy()
    header.set_data_dtype(data.dtype)
    header.set_slope_inter(np.nan, np.nan)  # the values are stored as they are
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    if not isinstance(header, nib.Nifti1Header):  # an Analyze-style header: keep only the grid
        header = None
    image = image_class(data, like.affine, header)

    def write(handle) -> None:
        if path.name.lower().endswith(".gz"):
            # Level 1 is nibabel's own default: large volumes compress fast and nearly as well.
            with gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=1, mtime=0) as stream:
                image.to_stream(stream)
        else:
            image.to_stream(handle)

    return atomic_write(path, write, fsync=fsync)


def normalise(
    data: np.ndarray,
    mode: Literal["ct", "zscore", "none"] = "none",
    window: tuple[float, float] = CT_WINDOW,
    nonzero: bool = True,
) -> np.ndarray:
    """Map a volume's intensities to the range a network is trained on; returns float32.

    Args:
        data: the image volume.
        mode: ``ct`` clips to ``window`` (Hounsfield units) and scales it to [0, 1]; ``zscore``
            subtracts the volume's mean and divides by its standard deviation (MRI, whose intensities
            have no absolute scale); ``none`` leaves the values as they are (data normalised already,
            such as the UA-MT left-atrium release).
        window: ``(lo, hi)`` for ``ct``; the default is the abdominal soft-tissue window.
        nonzero: for ``zscore``, take the statistics over the nonzero voxels only, so that the zero
            background around a cropped or skull-stripped scan does not drag them; every voxel is then
            normalised with them. A volume with no nonzero voxel uses all voxels.

    Raises:
        ValueError: an unknown mode or an empty window.
    """
    data = np.asarray(data, dtype=np.float32)
    if mode == "none":
        return data
    if mode == "ct":
        lo, hi = (float(v) for v in window)
        if not hi > lo:
            raise ValueError(f"CT window must have lo < hi, got {window}")
        return ((np.clip(data, lo, hi) - lo) / (hi - lo)).astype(np.float32)
    if mode == "zscore":
        values = data[data != 0] if nonzero else data
        if values.size == 0:
            values = data
        mean = float(values.mean(dtype=np.float64)) if values.size else 0.0
        std = float(values.std(dtype=np.float64)) if values.size else 0.0
        return ((data - mean) / (std if std > 1e-8 else 1.0)).astype(np.float32)
    raise ValueError(f"normalise mode must be one of {', '.join(NORMALISE_MODES)}, got {mode!r}")
