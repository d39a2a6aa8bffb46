"""Model files: weights plus everything needed to rebuild, label and score without the run's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from atso.data.description import DatasetDescription
from atso.errors import AtsoError
from atso.storage import atomic_save_torch, load_torch

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
    payload = load_torch(path, "cpu", setting)  # tensors and plain data only: a model file never runs code
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
    _fit(model, payload.get("state_dict"), path, "its weights do not fit the network it names", "pass a model.pt written by atso")
    return model.to(device).eval(), info


def _fit(model: torch.nn.Module, state_dict: Any, path: Path, problem: str, fix: str, lead: str = "") -> None:
    """``model.load_state_dict`` whose failure is one line naming the file, the first mismatch and the fix."""
    if not isinstance(state_dict, dict):
        raise AtsoError(f"{lead}{path}: holds no state_dict; {fix}")
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise AtsoError(f"{lead}{path}: {problem} ({first}); {fix}") from exc


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a model file (a student's starting point).

    Raises:
        AtsoError: the file is missing, corrupt, not an atso model file or holds more than plain data.
    """
    payload = _read_model_file(Path(path))
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise AtsoError(f"{path}: model file holds no state_dict; delete the job's folder and run again")
    return state


def read_info(path: str | Path) -> ModelInfo:
    """What a model file says about itself (its network and label space), without building the network.

    Raises:
        AtsoError: as :func:`load_model`.
    """
    path = Path(path)
    return read_model_info(_read_model_file(path), path)


def verify_model_file(path: Path) -> None:
    """Read a finished job's model file once, so a corrupt one stops a resume before any work starts.

    Raises:
        AtsoError: the file cannot be read, holds more than plain data, or is not an atso model file.
    """
    payload = _read_model_file(Path(path))
    read_model_info(payload, Path(path))


def load_pretrained(model: torch.nn.Module, path: Path) -> None:
    """Start ``model`` from another run's model file (``model.pretrained``), or say why it does not fit.

    Raises:
        AtsoError: the file is missing, not an atso model file, or holds another network or class count.
    """
    payload = _read_model_file(Path(path), "model.pretrained")
    _fit(
        model, payload.get("state_dict"), Path(path), "does not fit this model.name/options and class count",
        "use a model trained with the same network and dataset description", lead="model.pretrained: ",
    )


def check_pretrained(path: Path | None, network: torch.nn.Module) -> None:
    """Preflight for ``model.pretrained``: load it into a freshly built ``network`` before the run directory exists.

    Raises:
        AtsoError: as :func:`load_pretrained`.
    """
    if path is not None:
        load_pretrained(network, path)
