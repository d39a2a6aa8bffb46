"""``runtime.device``: the torch device a name asks for."""

from __future__ import annotations

import torch

from atso.errors import AtsoError
from atso.runtime import distributed


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; under torchrun, CUDA is this process's GPU."""
    if name == "auto":
        return distributed.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AtsoError(f"runtime.device: '{name}' asked for but CUDA is not available; use cpu or auto")
    return distributed.local_device(device)
