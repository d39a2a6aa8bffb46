"""Images and volumes behind one interface (:class:`atso.modalities.base.Modality`), chosen once."""

from __future__ import annotations

from atso.checkpoints import ModelInfo
from atso.config import Config
from atso.data.description import DatasetDescription
from atso.modalities.base import Modality, Part
from atso.modalities.images import Images
from atso.modalities.volumes import Volumes

MODALITIES: dict[str, type[Modality]] = {"image": Images, "volume": Volumes}  # data.kind -> modality

__all__ = ["MODALITIES", "Images", "Modality", "Part", "Volumes", "for_kind", "for_model", "for_run"]


def for_run(config: Config, description: DatasetDescription) -> Modality:
    """The modality of a run: ``data.kind`` of its config."""
    return MODALITIES[config.data.kind](description, config)


def for_kind(kind: str, description: DatasetDescription) -> Modality:
    """The modality of ``data.kind`` without a run (e.g. for the report's wording)."""
    return MODALITIES[kind](description)


def for_model(info: ModelInfo, description: DatasetDescription | None = None) -> Modality:
    """The modality a model file was trained for: a volume model carries its volume settings."""
    return MODALITIES["volume" if info.extra.get("volume") else "image"](description or info.description)
