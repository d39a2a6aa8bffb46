"""The data section: sources, the labeled subset, the input size, and how volumes become slices."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from atso.config.base import Float, Int, _Section
from atso.errors import AtsoError

IdPrefixes = list[str]  # module-level alias: SourceConfig has a field named ``list``
MAX_INPUT_SIDE = 4096  # a larger crop than any dataset atso targets; 100000^2 would exhaust memory first


class SourceConfig(_Section):
    """Where samples come from: a CamVid-style split, an image folder (+ mask folder), or a list file."""

    root: Path | None = Field(default=None, description="dataset root of a CamVid or Cityscapes layout")
    layout: Literal["camvid", "cityscapes", "decathlon"] = Field(
        default="camvid",
        description=(
            "with root + split: camvid (SPLIT/, SPLITannot/), cityscapes (leftImg8bit/SPLIT/CITY, gtFine/...) "
            "or decathlon (root/dataset.json; split training or test)"
        ),
    )
    split: str | None = Field(default=None, description="split name under root, e.g. train, val, test; training for decathlon")
    images: Path | None = Field(default=None, description="folder of images")
    masks: Path | None = Field(default=None, description="folder of masks with the images' stems")
    mask_suffix: str = Field(default="", description="appended to an image's stem to name its mask")
    list: Path | None = Field(default=None, description="list file: 'image [mask]' per line")
    description: str | None = Field(
        default=None,
        description="this source's own dataset description, mapping its mask values onto the run's classes",
    )
    include: IdPrefixes = Field(default_factory=builtins.list, description="keep only sample ids starting with these")
    exclude: IdPrefixes = Field(default_factory=builtins.list, description="drop sample ids starting with these")

    @model_validator(mode="after")
    def _one_layout(self) -> "SourceConfig":
        layouts = [self.split is not None or self.root is not None, self.images is not None, self.list is not None]
        if sum(layouts) != 1:
            raise ValueError("give exactly one of: root + split (CamVid layout), images (+ masks), list")
        if (self.root is None) != (self.split is None):
            raise ValueError("root and split go together (root/SPLIT and root/SPLITannot)")
        if self.masks is not None and self.images is None:
            raise ValueError("masks needs images")
        if self.layout == "decathlon" and self.split not in (None, "training", "test"):
            raise ValueError(f"decathlon split must be training or test, got '{self.split}'")
        return self


VIEWS = ("axial", "coronal", "sagittal")


class VolumeConfig(_Section):
    """How 3D volumes become 2D slices and back (used when ``data.kind`` is ``volume``)."""

    views: list[Literal["axial", "coronal", "sagittal"]] = Field(
        default_factory=lambda: list(VIEWS), description="views to slice along, one 2D network each"
    )
    shared_network: bool = Field(default=False, description="one network for all views instead of one per view")
    context: Int = Field(default=0, ge=0, le=8, description="neighbouring slices on each side, as extra channels")
    empty_ratio: Float = Field(default=0.25, ge=0, le=1, description="share of background-only slices kept in training")
    intensity: Literal["ct", "zscore", "none"] = Field(
        default="zscore", description="ct: clip to window and scale to [0, 1]; zscore: per volume (MRI); none: as stored"
    )
    window: tuple[Float, Float] = Field(default=(-100.0, 240.0), description="Hounsfield window for intensity: ct")
    slice_spacing: Float | None = Field(
        default=None, gt=0, description="resample the long axis (2) to this spacing before slicing; outputs go back"
    )
    fusion: Literal["majority", "mean"] = Field(
        default="majority", description="how the views' predictions merge: majority vote or mean probability"
    )

    @field_validator("views")
    @classmethod
    def _distinct_views(cls, views: list[str]) -> list[str]:
        if not views or len(set(views)) != len(views):
            raise ValueError(f"{views}: list each view once, e.g. [axial, coronal, sagittal]")
        return views


class DataConfig(_Section):
    """Which samples are labeled (S), reference (R), test (E), and the size networks see."""

    description: str = Field(default="camvid", description="built-in dataset description or a YAML file")
    kind: Literal["image", "volume"] = Field(default="image", description="2D images, or 3D volumes (NIfTI)")
    volume: VolumeConfig = Field(default_factory=VolumeConfig, description="slicing and fusion, for kind: volume")
    train: SourceConfig = Field(description="samples split into the labeled set S and the reference set R")
    test: SourceConfig | list[SourceConfig] | None = Field(
        default=None, description="held-out samples scored after each generation: one source or a list (several clips)"
    )
    unlabeled: list[SourceConfig] = Field(default_factory=list, description="extra reference samples, no masks")
    labeled_count: Int | None = Field(default=None, ge=1)
    labeled_fraction: Float | None = Field(default=None, gt=0, le=1)
    labeled_list: Path | None = Field(default=None, description="list file naming the labeled samples")
    split_seed: Int = 0
    input_size: tuple[Int, Int] = Field(
        default=(96, 128), description="(height, width) networks see; for volumes, every slice is resized to it"
    )

    @model_validator(mode="after")
    def _one_labeled_rule(self) -> "DataConfig":
        rules = [self.labeled_count is not None, self.labeled_fraction is not None, self.labeled_list is not None]
        if sum(rules) > 1:
            raise ValueError("give at most one of labeled_count, labeled_fraction, labeled_list")
        return self

    @field_validator("input_size")
    @classmethod
    def _input_size_in_range(cls, size: tuple[int, int]) -> tuple[int, int]:
        return check_input_size(size)


def check_input_size(size: tuple[int, int] | list[int], key: str = "") -> tuple[int, int]:
    """An (height, width) between 16 and :data:`MAX_INPUT_SIDE` pixels each way, or an error saying so.

    Raises:
        ValueError: with ``key`` empty (pydantic adds the key); AtsoError naming ``key`` otherwise.
    """
    lead = f"{key}: " if key else ""
    problem = None
    if min(size) < 16:
        problem = "is too small; give at least 16 pixels each way, e.g. [96, 128]"
    elif max(size) > MAX_INPUT_SIDE:
        problem = f"is too large; give at most {MAX_INPUT_SIDE} pixels each way (the crop must fit in memory)"
    if problem is None:
        return (int(size[0]), int(size[1]))
    message = f"{lead}{list(size)} {problem}"
    raise AtsoError(message) if key else ValueError(message)
