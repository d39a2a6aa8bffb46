"""What a dataset's labels mean: class names, ignore index, palette and a raw-value remap."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from atso.config import read_text_file, read_yaml
from atso.errors import AtsoError

BUILTIN_DESCRIPTIONS = ("camvid", "cityscapes", "left-atrium")


class DatasetDescription(BaseModel):
    """Label space of one dataset, loaded from YAML (built-in name or file path).

    ``remap`` maps raw mask values to class indices (many to one) or to ``ignore_index``; it is applied
    before validation. With ``mask_format: color`` the masks are RGB and ``palette`` gives each class's
    colour; unknown colours are errors unless listed in ``ignore_colors``. ``unmapped: ignore`` turns every
    raw value that is neither remapped nor a class into ``ignore_index`` (for label spaces mapped onto
    another dataset's classes). ``superclasses`` groups classes (name -> class names) for super-class
    pseudo-labels; every class belongs to exactly one group.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "dataset"
    classes: list[str] = Field(min_length=1)
    ignore_index: int = Field(default=255, ge=0, le=255)
    palette: list[tuple[int, int, int]] | None = None
    remap: dict[int, int] = Field(default_factory=dict)
    mask_format: Literal["index", "color"] = "index"
    ignore_colors: list[tuple[int, int, int]] = Field(default_factory=list)
    unmapped: Literal["error", "ignore"] = "error"
    superclasses: dict[str, list[str]] | None = None

    @model_validator(mode="after")
    def _check(self) -> "DatasetDescription":
        n = len(self.classes)
        twice = sorted({name for name in self.classes if self.classes.count(name) > 1})
        if twice:  # per_class_iou is keyed by name: a repeated name would drop a class from the scores
            raise ValueError(f"class name(s) {', '.join(twice)} given more than once; give each class its own name")
        if self.ignore_index < n:
            raise ValueError(f"ignore_index {self.ignore_index} collides with a class index (0..{n - 1})")
        if self.palette is not None and len(self.palette) != n:
            raise ValueError(f"palette has {len(self.palette)} colours for {n} classes")
        if self.mask_format == "color" and self.palette is None:
            raise ValueError("mask_format 'color' needs a palette (one RGB colour per class)")
        for raw, target in self.remap.items():
            if not (0 <= target < n or target == self.ignore_index):
                raise ValueError(f"remap {raw}: {target} is neither a class (0..{n - 1}) nor ignore_index")
        if self.superclasses is not None:
            grouped = [name for members in self.superclasses.values() for name in members]
            unknown = sorted(set(grouped) - set(self.classes))
            if unknown:
                raise ValueError(f"superclasses name unknown classes: {', '.join(unknown)}")
            missing = [name for name in self.classes if name not in grouped]
            twice = sorted({name for name in grouped if grouped.count(name) > 1})
            if missing or twice:
                raise ValueError(
                    f"superclasses must put every class in exactly one group (missing: {missing}, twice: {twice})"
                )
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def color_palette(self) -> list[tuple[int, int, int]]:
        """The palette, or a deterministic one when the description gives none."""
        if self.palette is not None:
            return list(self.palette)
        rng = np.random.default_rng(0)
        return [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(self.num_classes)]

    def superclass_table(self) -> np.ndarray:
        """Class index -> super-class index (groups in the order given)."""
        if self.superclasses is None:
            raise ValueError(f"description '{self.name}' defines no superclasses")
        table = np.zeros(self.num_classes, dtype=np.int64)
        for group, members in enumerate(self.superclasses.values()):
            for name in members:
                table[self.classes.index(name)] = group
        return table

    def superclass_description(self) -> "DatasetDescription":
        """The label space of the super-classes (for pseudo-labels and super-class scores)."""
        if self.superclasses is None:
            raise ValueError(f"description '{self.name}' defines no superclasses")
        return DatasetDescription(name=f"{self.name}-super", classes=list(self.superclasses), ignore_index=self.ignore_index)

    def lookup_table(self) -> np.ndarray:
        """A 256-entry table from raw mask value to class index; unmapped values stay as they are
        (or become ``ignore_index`` with ``unmapped: ignore``)."""
        table = np.arange(256, dtype=np.int64)
        if self.unmapped == "ignore":
            table[self.num_classes :] = self.ignore_index
        for raw, target in self.remap.items():
            if 0 <= raw < 256:
                table[raw] = target
        return table


def load_description(name_or_path: str | Path, base_dir: Path | None = None) -> DatasetDescription:
    """Load a built-in description by name (``camvid``) or a YAML file.

    Raises:
        AtsoError: the file is missing, is not YAML, or does not validate.
    """
    text_name = str(name_or_path)
    if text_name in BUILTIN_DESCRIPTIONS:
        text = resources.files("atso").joinpath("descriptions", f"{text_name}.yaml").read_text()
        source = f"built-in description '{text_name}'"
    else:
        path = Path(text_name)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise AtsoError(
                f"{path}: dataset description not found; give a YAML file or one of {', '.join(BUILTIN_DESCRIPTIONS)}"
            )
        text = read_text_file(path, "dataset description")
        source = str(path)
    data = read_yaml(source, "dataset description", text=text)  # unique keys: a second 'classes' is an error
    if not isinstance(data, dict):
        raise AtsoError(f"{source}: expected a mapping with 'classes', 'ignore_index', ...")
    try:
        return DatasetDescription(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "description"
        raise AtsoError(f"{source}: {key}: {first['msg'].replace('Value error, ', '')}") from exc
