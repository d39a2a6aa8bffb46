"""Reading images and label maps with checks that name the file, and writing label PNGs atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from atso.data.description import DatasetDescription
from atso.errors import AtsoError
from atso.storage import atomic_write

# Everything Pillow raises for a damaged or truncated file once the pixels are decoded.
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_WIDE_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_ARRAY_SUFFIXES = (".npy", ".npz", ".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".h5")


def _open(path: str | Path, what: str, decode: bool = True) -> Image.Image:
    """Open ``path`` (decoding the pixels unless ``decode`` is False) or raise an AtsoError naming it."""
    path = Path(path)
    if not path.is_file():
        raise AtsoError(f"{path}: {what} file not found; check the data folder and the split file")
    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            if frames > 1:  # a TIFF stack or an animation would otherwise be read as its first slice
                raise AtsoError(
                    f"{path}: {what} holds {frames} frames (a volume?), but atso reads one 2D image per file; "
                    "save each slice as its own file"
                )
            if decode:
                img.load()  # decoding here, inside the try, is what catches truncated files
            return img
    except _READ_ERRORS as exc:
        # UnidentifiedImageError's own message repeats the path; the line already starts with it.
        unidentified = isinstance(exc, UnidentifiedImageError)
        reason = "not a recognised image format" if unidentified else str(exc) or exc.__class__.__name__
        if unidentified and path.name.lower().endswith(_ARRAY_SUFFIXES):
            reason = "an array or volume file, not a 2D image; save each slice as a PNG"
        raise AtsoError(f"{path}: cannot read {what} ({reason}); replace or remove the file") from exc


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an ``HxWx3`` uint8 RGB array.

    16-bit and 32-bit grayscale is scaled by its maximum to 8 bits; grayscale, palette and alpha
    images are converted to RGB.

    Raises:
        AtsoError: the file is missing or cannot be decoded.
    """
    img = _open(path, "image")
    if img.mode in _WIDE_GRAY_MODES or img.mode == "F":
        values = np.asarray(img, dtype=np.float64).clip(min=0)
        peak = values.max() if values.size else 0.0
        gray = np.rint(values * (255.0 / peak)) if peak > 0 else values
        return np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)
    return np.array(img.convert("RGB"), dtype=np.uint8)


def _check_size(path: str | Path, img: Image.Image, expected_size: tuple[int, int] | None) -> None:
    if expected_size is not None and (img.height, img.width) != tuple(expected_size):
        height, width = expected_size
        raise AtsoError(
            f"{path}: mask is {img.width}x{img.height} but its image is {width}x{height}; "
            "masks must match their image's size"
        )


def _check_labels(path: str | Path, labels: np.ndarray, num_classes: int, ignore_index: int, fix: str) -> np.ndarray:
    """Return ``labels`` as uint8 after checking every value is a class or ``ignore_index``."""
    values = np.unique(labels)
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise AtsoError(
            f"{path}: label value(s) {shown} are neither a class (0..{num_classes - 1}) "
            f"nor the ignore index {ignore_index}; {fix}"
        )
    return labels.astype(np.uint8)


def _index_values(path: str | Path, img: Image.Image, what: str, fix: str) -> np.ndarray:
    """Raw values of a single-channel mask; for a 'P' image these are the palette indices."""
    if img.mode in ("L", "P", "1"):
        return np.array(img).astype(np.int64)
    if img.mode in _WIDE_GRAY_MODES:
        values = np.array(img).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 255):
            raise AtsoError(
                f"{path}: {what} holds values up to {values.max()}, beyond 0..255; "
                "re-save it as an 8-bit single-channel PNG of class indices"
            )
        return values
    raise AtsoError(f"{path}: {what} has mode {img.mode}, not single-channel class indices; {fix}")


def _decode_colors(path: str | Path, rgb: np.ndarray, description: DatasetDescription) -> np.ndarray:
    """Map each pixel's exact colour to its class, or to the ignore index for ``ignore_colors``."""
    keys = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    colors, inverse = np.unique(keys, return_inverse=True)
    known: dict[int, int] = {}
    for color in description.ignore_colors:
        known[(color[0] << 16) | (color[1] << 8) | color[2]] = description.ignore_index
    for index, color in reversed(list(enumerate(description.palette or []))):  # first listed class wins
        known[(color[0] << 16) | (color[1] << 8) | color[2]] = index
    unknown = [int(key) for key in colors if int(key) not in known]
    if unknown:
        first = (unknown[0] >> 16, (unknown[0] >> 8) & 255, unknown[0] & 255)
        raise AtsoError(
            f"{path}: colour {first} ({len(unknown)} unknown colour(s) in all) is neither in the palette "
            "nor in ignore_colors; add it to 'palette' or 'ignore_colors' in the dataset description or fix the mask"
        )
    classes = np.array([known[int(key)] for key in colors], dtype=np.int64)
    return classes[inverse].reshape(keys.shape)


def read_mask(
    path: str | Path, description: DatasetDescription, expected_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Read a reference mask as ``HxW`` uint8 class indices, with ``ignore_index`` where unscored.

    Args:
        path: the mask file.
        description: the dataset's label space: mask format, palette, remap and ignore index.
        expected_size: ``(H, W)`` of the mask's image, checked when given.

    Raises:
        AtsoError: the file is missing or unreadable, has the wrong size or format, or holds a value
            (after ``remap``) that is neither a class nor the ignore index.
    """
    img = _open(path, "mask")
    _check_size(path, img, expected_size)
    if description.mask_format == "color":
        raw = _decode_colors(path, np.array(img.convert("RGB")), description)
    else:
        fix = "set mask_format: color (with a palette) in the dataset description, or save index masks"
        raw = _index_values(path, img, "mask", fix)
    labels = description.lookup_table()[raw]
    return _check_labels(
        path, labels, description.num_classes, description.ignore_index,
        "add them to 'remap' in the dataset description or fix the mask",
    )


def read_label_map(path: str | Path, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Read a pseudo-label or prediction PNG written by :func:`write_label_png` (no remap applied).

    Raises:
        AtsoError: the file is missing, unreadable, not single-channel, or holds an invalid value.
    """
    img = _open(path, "label map")
    fix = "delete the file so that it is written again"
    return _check_labels(path, _index_values(path, img, "label map", fix), num_classes, ignore_index, fix)


def write_label_png(
    path: str | Path,
    labels: np.ndarray,
    palette: Sequence[tuple[int, int, int]],
    ignore_index: int = 255,
    fsync: bool = True,
) -> Path:
    """Atomically write class indices as an 8-bit palette PNG that views in colour.

    The pixel values are the class indices themselves (ignored pixels keep ``ignore_index`` and are
    drawn black), so :func:`read_label_map` gets back exactly ``labels``. With ``fsync=False`` the
    caller flushes it later (:func:`atso.storage.fsync_files`).

    Raises:
        ValueError: ``labels`` is not 2-D or holds values outside 0..255.
        AtsoError: the file cannot be written.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be HxW, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must lie in 0..255 to fit an 8-bit PNG, got {labels.min()}..{labels.max()}")
    colors = np.zeros((256, 3), dtype=np.uint8)
    colors[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
    colors[ignore_index] = 0
    img = Image.fromarray(labels.astype(np.uint8))
    img.putpalette(colors.reshape(-1).tolist())
    return atomic_write(path, lambda handle: img.save(handle, format="PNG"), fsync=fsync)


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    palette: Sequence[tuple[int, int, int]],
    alpha: float = 0.5,
    ignore_index: int = 255,
) -> np.ndarray:
    """Blend class colours over an RGB image; ignored pixels and classes without a colour stay as they are."""
    image, labels = np.asarray(image), np.asarray(labels)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != labels.shape:
        raise ValueError(f"need an HxWx3 image and HxW labels, got {image.shape} and {labels.shape}")
    colors = np.asarray(palette, dtype=np.float64).reshape(-1, 3)
    blended = image.astype(np.float64)
    drawn = (labels != ignore_index) & (labels >= 0) & (labels < len(colors))
    blended[drawn] = (1.0 - alpha) * blended[drawn] + alpha * colors[labels[drawn]]
    return np.rint(blended).clip(0, 255).astype(np.uint8)


def write_rgb_png(path: str | Path, image: np.ndarray) -> Path:
    """Atomically write an ``HxWx3`` uint8 array as an RGB PNG."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"need an HxWx3 uint8 image, got shape {image.shape} and dtype {image.dtype}")
    img = Image.fromarray(image)
    return atomic_write(path, lambda handle: img.save(handle, format="PNG"))


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image, read from its header without decoding the pixels."""
    img = _open(path, "image", decode=False)
    return img.height, img.width


def verify_image(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image checked whole, for preflight: a truncated file fails before M0 trains, not at labeling.

    PNGs are verified chunk by chunk (every CRC, no decoding: cheap for a large reference set); other
    formats, whose ``verify`` misses truncation (JPEG), are decoded.

    Raises:
        AtsoError: the file is missing, not an image, truncated or damaged.
    """
    img = _open(path, "image", decode=False)
    size = img.height, img.width
    try:
        if img.format == "PNG":
            with Image.open(path) as fresh:  # verify() needs a file Pillow has not read pixels from
                fresh.verify()
        else:
            _open(path, "image", decode=True)
    except _READ_ERRORS as exc:
        raise AtsoError(f"{path}: cannot read image ({exc or exc.__class__.__name__}); replace or remove the file") from exc
    return size
