"""Model files: weights plus everything needed to rebuild, label and score without the run's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from atso.data.description import DatasetDescription
from atso.errors import AtsoError
from atso.storage import atomic_save_torch

MODEL_FORMAT = "atso-model/1"


@dataclass
class ModelInfo:
    """What a model file says about its network and label space."""

    name: str
    options: dict[str, Any]
    description: DatasetDescription
    input_size: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)


def save_model(path: Path, model: torch.nn.Module, info: ModelInfo) -> Path:
    """Write a self-contained model file atomically (weights moved to CPU)."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise AtsoError(f"{path}: refusing to save weights holding NaN or inf ({key}); lower the learning rate")
    payload = {
        "format": MODEL_FORMAT,
        "model": {"name": info.name, "options": info.options},
        "description": info.description.model_dump(mode="json"),
        "input_size": list(info.input_size),
        "extra": info.extra,
        "state_dict": state,
    }
    return atomic_save_torch(path, payload)


def read_model_info(payload: dict[str, Any], path: Path) -> ModelInfo:
    try:
        return ModelInfo(
            name=payload["model"]["name"],
            options=dict(payload["model"]["options"]),
            description=DatasetDescription(**payload["description"]),
            input_size=tuple(payload["input_size"]),
            extra=dict(payload.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AtsoError(f"{path}: not an atso model file ({exc}); pass a model.pt written by atso") from exc


def _read_model_file(path: Path, setting: str = "") -> dict[str, Any]:
    """The payload of an atso model file; ``setting`` (e.g. ``model.pretrained``) leads any error."""
    lead = f"{setting}: " if setting else ""
    if not path.is_file():
        raise AtsoError(f"{lead}{path}: checkpoint not found; pass a model.pt written by atso")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise AtsoError(f"{lead}{path}: cannot read checkpoint ({exc.__class__.__name__}); it may be truncated") from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise AtsoError(f"{lead}{path}: not an atso model file; pass a model.pt written by atso")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelInfo]:
    """Rebuild a network from a model file, in eval mode on ``device``.

    Raises:
        AtsoError: the file is missing, unreadable or not an atso model file.
    """
    from atso.models import build_model

    path = Path(path)
    payload = _read_model_file(path)
    info = read_model_info(payload, path)
    options = {k: v for k, v in info.options.items() if k != "pretrained_backbone"}
    volume = info.extra.get("volume")
    if volume:  # a volume model: the networks of its views
        from atso.models.views import build_view_networks

        model = build_view_networks(
            info.name, info.description.num_classes, 2 * int(volume["context"]) + 1,
            volume["views"], bool(volume["shared_network"]), **options,
        )
    else:
        model = build_model(info.name, info.description.num_classes, **options)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), info


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a model file (a student's starting point)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    return payload["state_dict"]


def load_pretrained(model: torch.nn.Module, path: Path) -> None:
    """Start ``model`` from another run's model file (``model.pretrained``), or say why it does not fit.

    Raises:
        AtsoError: the file is missing, not an atso model file, or holds another network or class count.
    """
    payload = _read_model_file(Path(path), "model.pretrained")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise AtsoError(
            f"model.pretrained: {path}: does not fit this model.name/options and class count ({first}); "
            "use a model trained with the same network and dataset description"
        ) from exc
