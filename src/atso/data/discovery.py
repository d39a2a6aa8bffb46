"""Recognise a dataset folder (``atso init``): its layout, classes and counts, as a config's data section.

Four layouts are known: CamVid (``train/ trainannot/``, tested on ``val/`` or ``test/``), Cityscapes
(``leftImg8bit/ gtFine/``), a Medical Segmentation Decathlon task (``dataset.json``: its ``labels``
give the classes, its ``training`` list the pairs; every 4th case is held out as the test set, since
the task's own test cases have no labels) and plain ``images/ masks/`` folders (of images or volumes).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atso.config import SourceConfig
from atso.data.samples import Sample, list_samples
from atso.errors import AtsoError

MASKS_SCANNED = 40  # enough masks to see every class of a typical dataset, quick on a laptop
SUPPORTED = "CamVid (train/ trainannot/), Cityscapes (leftImg8bit/ gtFine/), a Decathlon task (dataset.json), images/ masks/"


@dataclass
class FoundDataset:
    """What ``atso init`` found: the data section to write, its class names and what to check next."""

    layout: str
    kind: str
    data: dict[str, Any]
    classes: list[str]
    counts: dict[str, int]
    description: dict[str, Any] | None = None  # a description file to write; None: ``data['description']`` is built in
    notes: list[str] = field(default_factory=list)


def discover(folder: str | Path) -> FoundDataset:
    """Recognise ``folder``'s layout and read its classes and sample counts.

    Raises:
        AtsoError: the folder is missing or in none of the known layouts.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise AtsoError(f"{folder}: no such folder ({root}); give the dataset's folder")
    if (root / "dataset.json").is_file():
        return _decathlon(root)
    if (root / "train").is_dir() and (root / "trainannot").is_dir():
        return _camvid(root)
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return _cityscapes(root)
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return _folders(root)
    raise AtsoError(f"{root}: not a dataset layout atso knows; it recognises {SUPPORTED}")


def _with_labeled(data: dict[str, Any], count: int) -> dict[str, Any]:
    """One labeled sample in eight (CamVid's 46 of 367), the rest the reference set R."""
    if count < 2:
        raise AtsoError(f"data: {count} labeled sample(s) found; atso needs at least 2 (some labeled, some reference)")
    return {**data, "labeled_count": max(1, round(count / 8))}


def _decathlon(root: Path) -> FoundDataset:
    from atso.data.volume_sources import list_decathlon

    manifest = root / "dataset.json"
    try:
        labels = json.loads(manifest.read_text(encoding="utf-8")).get("labels") or {}
        classes = [str(labels[key]).strip().replace(" ", "_") for key in sorted(labels, key=int)]
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise AtsoError(f"{manifest}: cannot read its 'labels' ({exc}); give labels as {{\"0\": \"background\", ...}}") from exc
    samples = list_decathlon(root, "training")
    notes = []
    if not classes:
        classes = _classes_from_values(_label_values(samples, volume=True))
        notes.append(f"{manifest} has no 'labels': the classes are named by value; rename them in the description file")
    ids = [sample.id for sample in samples]
    held_out = [i for i in ids[3::4] if not any(o != i and o.startswith(i) for o in ids)] if len(ids) >= 4 else []
    source = {"root": str(root), "layout": "decathlon", "split": "training"}
    data: dict[str, Any] = {"kind": "volume", "train": {**source, "exclude": held_out}}
    if held_out:
        data["test"] = {**source, "include": held_out}
        notes.append(f"every 4th training case ({len(held_out)}) is held out as the test set (data.test.include)")
    else:
        notes.append("too few cases to hold any out: no test set; add one under data.test")
    data = _with_labeled({**data, "input_size": [64, 64]}, len(ids) - len(held_out))
    counts = {"train": len(ids) - len(held_out), "test": len(held_out)}
    return FoundDataset("decathlon", "volume", data, classes, counts, _description(root.name, classes), notes)


def _camvid(root: Path) -> FoundDataset:
    train = list_samples(SourceConfig(root=root, split="train"))
    test_split = next((s for s in ("val", "test") if (root / s).is_dir() and (root / f"{s}annot").is_dir()), None)
    test = list_samples(SourceConfig(root=root, split=test_split)) if test_split else []
    values = _label_values(train)
    data: dict[str, Any] = {"train": {"root": str(root), "split": "train"}, "input_size": _input_size(train[0])}
    if test_split:
        data["test"] = {"root": str(root), "split": test_split}
    notes = [] if test_split else ["no val/ valannot/ or test/ testannot/: no test set; add one under data.test"]
    if values and max(values) <= 11 and len(values) >= 6:  # the SegNet release: 11 classes, 11 is void
        from atso.data.description import load_description

        classes = load_description("camvid").classes
        found = FoundDataset("camvid", "image", {"description": "camvid", **data}, classes, {}, None, notes)
    else:
        classes = _classes_from_values(values)
        notes.append("the classes are named by mask value; rename them in the description file")
        found = FoundDataset("camvid", "image", data, classes, {}, _description(root.name, classes), notes)
    found.data = _with_labeled(found.data, len(train))
    found.counts = {"train": len(train), "test": len(test)}
    return found


def _cityscapes(root: Path) -> FoundDataset:
    from atso.data.description import load_description

    train = list_samples(SourceConfig(root=root, layout="cityscapes", split="train"))
    test = list_samples(SourceConfig(root=root, layout="cityscapes", split="val"))
    data = {
        "description": "cityscapes",
        "train": {"root": str(root), "layout": "cityscapes", "split": "train"},
        "test": {"root": str(root), "layout": "cityscapes", "split": "val"},
        "input_size": _input_size(train[0]),
    }
    classes = load_description("cityscapes").classes
    return FoundDataset("cityscapes", "image", _with_labeled(data, len(train)), classes,
                        {"train": len(train), "test": len(test)}, None, ["tested on val/ (the test split has no labels)"])


def _folders(root: Path) -> FoundDataset:
    from atso.data.volume_sources import list_volume_folder
    from atso.data.volumes import VOLUME_SUFFIXES

    images, masks = root / "images", root / "masks"
    volume = any(p.name.lower().endswith(VOLUME_SUFFIXES) for p in images.iterdir())
    samples = list_volume_folder(images, masks) if volume else list_samples(SourceConfig(images=images, masks=masks))
    classes = _classes_from_values(_label_values(samples, volume))
    data: dict[str, Any] = {"train": {"images": str(images), "masks": str(masks)}}
    data.update({"kind": "volume", "input_size": [64, 64]} if volume else {"input_size": _input_size(samples[0])})
    notes = ["no test set: add one under data.test, or pass --test DIR to train, run and compare",
             "the classes are named by mask value; rename them in the description file"]
    kind = "volume" if volume else "image"
    return FoundDataset("folders", kind, _with_labeled(data, len(samples)), classes, {"train": len(samples), "test": 0},
                        _description(root.name, classes), notes)


def _label_values(samples: list[Sample], volume: bool = False) -> list[int]:
    """The label values of up to :data:`MASKS_SCANNED` masks (2 volumes: they are large), without 255 (ignore)."""
    values: set[int] = set()
    for sample in samples[: 2 if volume else MASKS_SCANNED]:
        if sample.mask is None:
            continue
        if volume:
            import nibabel as nib

            array = np.asarray(nib.load(str(sample.mask)).dataobj)
        else:
            from PIL import Image

            with Image.open(sample.mask) as mask:
                array = np.asarray(mask)
            if array.ndim == 3:
                raise AtsoError(f"{sample.mask}: an RGB mask; atso init reads index masks (write mask_format: color by hand)")
        values.update(int(v) for v in np.unique(array) if 0 <= v < 255)
    return sorted(values)


def _classes_from_values(values: list[int]) -> list[str]:
    """Placeholder names, one per value from 0 to the largest seen (a gap is still a class index)."""
    return [f"class_{value}" for value in range((max(values) if values else 1) + 1)]


def _description(name: str, classes: list[str]) -> dict[str, Any]:
    return {"name": name, "classes": classes, "ignore_index": 255}


def _input_size(sample: Sample) -> list[int]:
    """The image's own size, halved until its long side is at most 256, rounded up to multiples of 16 (CPU-friendly)."""
    from atso.data.images import image_size

    height, width = image_size(sample.image)
    while max(width, height) > 256:
        width, height = width / 2, height / 2
    return [16 * math.ceil(height / 16), 16 * math.ceil(width / 16)]
