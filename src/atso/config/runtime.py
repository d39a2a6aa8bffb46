"""The runtime section, and the device checks made when a command starts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from atso.config.base import Int, _Section
from atso.errors import AtsoError


class RuntimeConfig(_Section):
    """Where and how to run; changing these never invalidates a run directory."""

    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N")
    amp: bool = Field(default=True, description="mixed precision on CUDA")
    amp_dtype: Literal["bfloat16", "float16"] = Field(
        default="bfloat16", description="autocast type on CUDA; float16 adds a gradient scaler"
    )
    channels_last: bool = Field(default=False, description="NHWC memory format for the model and its inputs (GPUs)")
    compile: bool = Field(
        default=False,
        description="torch.compile the networks for training and inference (the first batches wait for compiling; "
        "the CPU needs a C++ compiler)",
    )
    cudnn_benchmark: bool = Field(default=False, description="let cuDNN time convolution algorithms (fixed input sizes)")
    num_workers: Int = Field(default=0, ge=0, description="data-loader processes per training or inference job")
    prefetch_factor: Int = Field(default=2, ge=1, description="batches each data-loader process loads ahead")
    workers: Int = Field(default=1, ge=1, description="jobs of a run that may run at once, each in its own process")
    threads: Int | Literal["auto"] = Field(
        default="auto",
        description="intra-op CPU threads per job; auto: OMP_NUM_THREADS if set, else the usable cores / workers",
    )
    devices: list[str] = Field(
        default_factory=list, description="run ready jobs at once, one per listed device, e.g. [cuda:0, cuda:1]"
    )
    deterministic: bool = Field(
        default=False, description="deterministic GPU kernels (slower); the CPU is deterministic without it"
    )
    quiet: bool = Field(default=False, description="no progress bars")
    tensorboard: bool = Field(
        default=False, description="write loss, learning rate and @R/@E to RUN_DIR/tensorboard (pip install tensorboard)"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if device != "auto" and not is_device_name(device):
            raise ValueError(f"'{device}' is not a device; give auto, cpu, cuda, cuda:N or mps")
        return device

    @field_validator("threads", mode="before")
    @classmethod
    def _thread_count(cls, threads: Any) -> Any:
        if threads == "auto" or (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
            return threads
        raise ValueError(f"'{threads}' is not a thread count; give auto or a whole number of at least 1")

    @field_validator("devices")
    @classmethod
    def _known_devices(cls, devices: list[str]) -> list[str]:
        for device in devices:
            if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
                raise ValueError(f"'{device}' is not a device; give cpu, cuda or cuda:N, e.g. [cuda:0, cuda:1]")
        return devices

    @model_validator(mode="after")
    def _devices_or_workers(self) -> "RuntimeConfig":
        if self.devices and self.workers > 1:
            raise ValueError("give devices (one job per listed device) or workers (jobs on runtime.device), not both")
        return self


def is_device_name(name: str) -> bool:
    """Whether ``name`` is a device atso can run on somewhere: cpu, cuda, cuda:N or mps."""
    return name in ("cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())


def check_device(name: str, key: str) -> str:
    """Refuse a device that is not a device, or that this machine lacks, naming ``key`` (``--device``).

    Checked when a command starts, not when a config is read, so a GPU run's config stays readable
    (``atso report``) on a machine without one.

    Raises:
        AtsoError: e.g. ``tpu``, ``gpu``, ``cuda`` without CUDA, ``cuda:3`` on a 2-GPU machine.
    """
    import torch

    if name == "auto":
        return name
    if not is_device_name(name):
        raise AtsoError(f"{key}: '{name}' is not a device; give auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name[5:]) if ":" in name else 0
        if index >= count:
            found = f"{count} CUDA device(s) found" if count else "CUDA is not available"
            raise AtsoError(f"{key}: '{name}' asked for but {found}; use auto, cpu{', or cuda:0' if count else ''}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise AtsoError(f"{key}: 'mps' asked for but MPS is not available; use auto or cpu")
    return name
