"""Listing samples from the supported layouts, and list files that record a split."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from atso.config import SourceConfig
from atso.errors import AtsoError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    """One image, identified by its stem, with its mask when it has one."""

    id: str
    image: Path
    mask: Path | None = None
    label_space: str | None = None  # the description its mask is read with, when not the run's own
    group: str | None = None  # a list file's ``group=NAME``: what the fold split keeps together

    def without_mask(self) -> "Sample":
        """The same sample with its ground truth dropped (what training may see of a reference sample)."""
        return Sample(self.id, self.image, None, group=self.group)


def check_not_dangling(path: Path, what: str = "image") -> None:
    """A symlink to a missing file is an error, not a sample silently left out.

    Raises:
        AtsoError: ``path`` is a symlink whose target does not exist.
    """
    if path.is_symlink() and not path.exists():
        raise AtsoError(
            f"{path}: {what} is a symbolic link to a missing file ({os.readlink(path)}); fix or remove the link"
        )


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise AtsoError(f"{folder}: image folder not found; check the path in the config")
    files = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            check_not_dangling(p)
            if p.is_file():
                files.append(p)
    return files


def _find_mask(folder: Path, stem: str, suffix: str) -> Path | None:
    for ext in (".png", ".tif", ".tiff", ".bmp"):
        candidate = folder / f"{stem}{suffix}{ext}"
        check_not_dangling(candidate, "mask")
        if candidate.is_file():
            return candidate
    return None


def selected(source: SourceConfig, sample_id: str) -> bool:
    """Whether ``include`` / ``exclude`` keep a sample; checked before its mask, so excluded images need none."""
    if source.include and not sample_id.startswith(tuple(source.include)):
        return False
    return not sample_id.startswith(tuple(source.exclude))


def _from_folders(images: Path, masks: Path | None, source: SourceConfig, need_masks: bool) -> list[Sample]:
    suffix = source.mask_suffix
    samples = []
    for image in _image_files(images):
        if not selected(source, image.stem):
            continue
        mask = None
        if masks is not None:
            mask = _find_mask(masks, image.stem, suffix)
            if mask is None and need_masks:
                raise AtsoError(
                    f"{image}: labeled image has no mask {masks / (image.stem + suffix + '.png')}; "
                    "add the mask or move the image to an unlabeled source"
                )
        samples.append(Sample(file_id(image), image, mask))
    return samples


def file_id(path: Path) -> str:
    """A sample id from its file name: the stem, without ``.nii`` for a ``.nii.gz`` volume."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit"
CITYSCAPES_MASK_SUFFIX = "_gtFine_labelIds"


def _from_cityscapes(root: Path, split: str, source: SourceConfig, need_masks: bool) -> list[Sample]:
    """Cityscapes: ``leftImg8bit/SPLIT/CITY/ID_leftImg8bit.png`` with ``gtFine/SPLIT/CITY/ID_gtFine_labelIds.png``."""
    images_root = root / "leftImg8bit" / split
    if not images_root.is_dir():
        raise AtsoError(f"{images_root}: image folder not found; the Cityscapes layout needs leftImg8bit/{split}/CITY/")
    samples = []
    for image in sorted(images_root.glob(f"*/*{CITYSCAPES_IMAGE_SUFFIX}.png")):
        sample_id = image.name[: -len(f"{CITYSCAPES_IMAGE_SUFFIX}.png")]
        if not selected(source, sample_id):
            continue
        mask = root / "gtFine" / split / image.parent.name / f"{sample_id}{CITYSCAPES_MASK_SUFFIX}.png"
        if not mask.is_file():
            if need_masks:
                raise AtsoError(f"{image}: labeled image has no mask {mask}; add it or list the image as unlabeled")
            mask = None
        samples.append(Sample(sample_id, image, mask))
    return samples


GROUP_FIELD = "group="


def split_list_line(line: str, where: str, tabbed: bool = False) -> tuple[list[str], str | None]:
    """The paths of one list-file line, and its ``group=NAME`` field if it ends with one.

    Fields are tab-separated (spaces belong to the paths), or shell-quoted.

    Args:
        tabbed: the file holds a tab somewhere, so every line of it is tab-separated.

    Raises:
        AtsoError: an unclosed quote, an empty group, or more than two paths (with how to write paths
            with spaces).
    """
    fix = "quote paths with spaces (\"my image.png\" mask.png) or separate the two paths with a tab"
    if tabbed or "\t" in line:
        parts = [part.strip() for part in line.split("\t") if part.strip()]
    else:
        try:
            parts = shlex.split(line)
        except ValueError as exc:
            raise AtsoError(f"{where}: {exc}; {fix}") from exc
    group = None
    if len(parts) > 1 and parts[-1].startswith(GROUP_FIELD):
        group = parts.pop()[len(GROUP_FIELD):]
        if not group:
            raise AtsoError(f"{where}: 'group=' names no group; write group=NAME (e.g. group=patient07) or leave it out")
    if len(parts) > 2:
        raise AtsoError(f"{where}: expected 'image [mask] [group=NAME]', got {len(parts)} paths; {fix}")
    return parts, group


def read_list_file(path: Path, base_dir: Path | None = None) -> list[Sample]:
    """Read 'image [mask] [group=NAME]' lines; relative paths are relative to ``base_dir`` (default: the file's folder).

    Paths with spaces are quoted (``"a b.png" "a b mask.png"``), or the file is tab-separated: once any
    line holds a tab, every line splits on tabs only. ``group=NAME`` (a clip, a patient) is what
    ``teacher_student.fold_groups: listed`` keeps in one reference fold.
    """
    from atso.config import read_text_file

    path = Path(path)
    if not path.is_file():
        raise AtsoError(f"{path}: list file not found")
    base_dir = base_dir or path.parent
    samples = []
    text = read_text_file(path, "list file")
    tabbed = "\t" in text
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts, group = split_list_line(line, f"{path}:{number}", tabbed)
        if not parts:
            continue
        image = Path(parts[0]) if Path(parts[0]).is_absolute() else base_dir / parts[0]
        mask = None
        if len(parts) == 2:
            mask = Path(parts[1]) if Path(parts[1]).is_absolute() else base_dir / parts[1]
        samples.append(Sample(file_id(image), image, mask, group=group))
    return samples


def write_list_file(path: Path, samples: list[Sample], with_masks: bool = True) -> Path:
    """Record samples as 'image [mask]' lines with absolute paths, atomically."""
    from atso.storage import atomic_write_text

    lines = []
    for sample in samples:
        fields = [str(Path(sample.image).resolve())]
        if with_masks and sample.mask is not None:
            fields.append(str(Path(sample.mask).resolve()))
        lines.append(" ".join(shlex.quote(field) for field in fields))  # read back by split_list_line
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def list_samples(source: SourceConfig, need_masks: bool = True) -> list[Sample]:
    """List a source's samples, sorted by id, checking that images exist and ids are unique.

    Args:
        source: one of the three layouts.
        need_masks: every image must have a mask (labeled sources).
    """
    if source.list is not None:
        samples = [s for s in read_list_file(source.list) if selected(source, s.id)]
        origin = str(source.list)
        for sample in samples:
            check_not_dangling(sample.image)
            if sample.mask is not None:
                check_not_dangling(sample.mask, "mask")
            if not sample.image.is_file():
                raise AtsoError(f"{sample.image}: image file not found (listed in {source.list})")
            if sample.mask is not None and not sample.mask.is_file():
                raise AtsoError(f"{sample.mask}: mask file not found (listed in {source.list})")
            if need_masks and sample.mask is None:
                raise AtsoError(f"{sample.image}: labeled image has no mask in {source.list}; add 'image mask'")
    elif source.root is not None and source.layout == "cityscapes":
        samples = _from_cityscapes(source.root, str(source.split), source, need_masks)
        origin = str(source.root / "leftImg8bit" / str(source.split))
    elif source.root is not None:
        images = source.root / str(source.split)
        masks = source.root / f"{source.split}annot"
        if need_masks and not masks.is_dir():
            raise AtsoError(f"{masks}: mask folder not found; CamVid layout needs SPLIT/ and SPLITannot/")
        samples = _from_folders(images, masks if masks.is_dir() else None, source, need_masks)
        origin = str(images)
    else:
        assert source.images is not None
        if need_masks and source.masks is None:
            raise AtsoError(f"{source.images}: labeled source needs 'masks' (a folder of masks)")
        if source.masks is not None and not source.masks.is_dir():
            raise AtsoError(f"{source.masks}: mask folder not found; check the path in the config")
        samples = _from_folders(source.images, source.masks, source, need_masks)
        origin = str(source.images)
    if source.description is not None:
        samples = [replace(s, label_space=source.description) for s in samples]
    if not samples:
        raise AtsoError(f"{origin}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return unique_sorted(samples, "sample id", "file stems")


def unique_sorted(samples: list[Sample], what: str = "sample id", ids_are: str = "file stems") -> list[Sample]:
    """Samples sorted by id; two samples with one id are an error naming both files."""
    seen: dict[str, Sample] = {}
    for sample in samples:
        if sample.id in seen:
            raise AtsoError(
                f"{sample.image}: duplicate {what} '{sample.id}' (also {seen[sample.id].image}); ids are {ids_are}"
            )
        seen[sample.id] = sample
    return sorted(samples, key=lambda s: s.id)
