"""Where volumes come from: a Decathlon task's ``dataset.json``, a folder of volumes, or a configured source."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from atso.data.samples import Sample, unique_sorted
from atso.data.volumes import VOLUME_SUFFIXES, is_volume_file, volume_id
from atso.errors import AtsoError

if TYPE_CHECKING:
    from atso.config import SourceConfig


def _decathlon_path(root: Path, entry: str, manifest: Path, image: bool) -> Path:
    """Resolve a dataset.json path; nnU-Net copies name single-channel images ``ID_0000.nii.gz``."""
    path = root / entry
    if not path.is_file() and image:
        nnunet = path.with_name(f"{volume_id(path)}_0000.nii.gz")
        if nnunet.is_file():
            return nnunet
    if not path.is_file():
        raise AtsoError(f"{path}: volume file not found (listed in {manifest}); restore it or fix dataset.json")
    return path


def list_decathlon(root: str | Path, split: Literal["training", "test"] = "training") -> list[Sample]:
    """List a Medical Segmentation Decathlon task from its ``dataset.json``, sorted by id.

    ``training`` gives ``{"image", "label"}`` pairs, ``test`` image paths only; paths are relative to
    ``root``. Ids are the listed file names without ``.nii.gz``.

    Raises:
        AtsoError: ``dataset.json`` is missing or malformed, lists no volume for ``split``, a listed
            file is missing, or two entries share an id.
    """
    root = Path(root)
    manifest = root / "dataset.json"
    if split not in ("training", "test"):
        raise ValueError(f"split must be 'training' or 'test', got {split!r}")
    if not manifest.is_file():
        raise AtsoError(f"{manifest}: not found; a Decathlon task folder holds dataset.json, imagesTr/, labelsTr/")
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8")).get(split, [])
    except (OSError, ValueError, AttributeError) as exc:
        raise AtsoError(f"{manifest}: cannot read it as a JSON mapping ({exc}); restore the file") from exc
    if not isinstance(entries, list):
        raise AtsoError(f"{manifest}: '{split}' must be a list of entries")
    samples = []
    for number, entry in enumerate(entries):
        listed = entry.get("image") if isinstance(entry, dict) else entry
        listed_label = entry.get("label") if isinstance(entry, dict) else None
        if not isinstance(listed, str) or (split == "training" and not isinstance(listed_label, str)):
            shape = '{"image": PATH, "label": PATH}' if split == "training" else "an image path"
            raise AtsoError(f"{manifest}: {split} entry {number} must be {shape}; fix dataset.json")
        label = _decathlon_path(root, listed_label, manifest, image=False) if split == "training" else None
        samples.append(Sample(volume_id(listed), _decathlon_path(root, listed, manifest, image=True), label))
    if not samples:
        raise AtsoError(f"{manifest}: lists no '{split}' volumes; choose a split it has or add the entries")
    return unique_sorted(samples, "volume id", "file names")


def list_volume_folder(
    images: str | Path,
    labels: str | Path | None = None,
    image_suffix: str = "",
    label_suffix: str = "",
    need_labels: bool = True,
) -> list[Sample]:
    """List the volumes of a folder, each with ``labels/ID{label_suffix}.nii[.gz]`` when there is one.

    Args:
        images: folder of ``ID{image_suffix}.nii.gz`` (or ``.nii``) files.
        labels: folder of label volumes, or None for unlabeled volumes.
        image_suffix: stripped from image names to get ids (``_0000`` for nnU-Net folders).
        label_suffix: appended to the id to find its label.
        need_labels: every image must have a label (labeled sources).

    Raises:
        AtsoError: a folder is missing, holds no volumes, or a labeled image has no label.
    """
    images = Path(images)
    labels = Path(labels) if labels is not None else None
    for folder in (images, labels):
        if folder is not None and not folder.is_dir():
            raise AtsoError(f"{folder}: volume folder not found; check the path in the config")
    samples = []
    for image in sorted(p for p in images.iterdir() if is_volume_file(p)):
        sample_id = volume_id(image, image_suffix)
        label = None
        if labels is not None:
            candidates = [labels / f"{sample_id}{label_suffix}{extension}" for extension in VOLUME_SUFFIXES]
            label = next((candidate for candidate in candidates if candidate.is_file()), None)
            if label is None and need_labels:
                raise AtsoError(
                    f"{image}: labeled volume has no label {candidates[0]}; add it or list the volume as unlabeled"
                )
        samples.append(Sample(sample_id, image, label))
    if not samples:
        raise AtsoError(f"{images}: no volumes found (looked for {', '.join(VOLUME_SUFFIXES)})")
    return unique_sorted(samples, "volume id", "file names")


def list_volume_source(source: "SourceConfig", need_masks: bool = True) -> list[Sample]:
    """List a configured source of volumes: a Decathlon task, a folder (+ label folder) or a list file."""
    from atso.data.samples import list_samples, selected

    if source.root is not None:
        if source.layout != "decathlon":
            raise AtsoError(
                f"{source.root}: volume sources with root + split use layout: decathlon (dataset.json), "
                f"not {source.layout}; or give images (+ masks) folders"
            )
        split = source.split or "training"
        samples = list_decathlon(source.root, split)  # type: ignore[arg-type]
        if need_masks and split != "training":
            raise AtsoError(f"{source.root}: the Decathlon '{split}' split has no labels; use split: training here")
    elif source.images is not None:
        if need_masks and source.masks is None:
            raise AtsoError(f"{source.images}: labeled volumes need 'masks' (a folder of label volumes)")
        samples = list_volume_folder(source.images, source.masks, label_suffix=source.mask_suffix, need_labels=need_masks)
    else:
        return list_samples(source, need_masks)  # a list file names its files, whatever they hold
    samples = [s for s in samples if selected(source, s.id)]
    if source.description is not None:
        samples = [replace(s, label_space=source.description) for s in samples]
    if not samples:
        raise AtsoError(f"{source.root or source.images}: no volumes left after include/exclude; check those lists")
    return samples
