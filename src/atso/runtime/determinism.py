"""``runtime.deterministic``: bit-identical reruns on one GPU, at some cost in speed.

On the CPU atso is deterministic without it: every training item is seeded from (seed, iteration,
slot), whatever the number of data-loader workers, and CPU kernels do not race. On CUDA some kernels
accumulate with atomics, so their sums depend on thread timing: convolution backward (cuDNN picks
such algorithms, and ``cudnn.benchmark`` picks by timing), bilinear upsampling backward, ``index_add``,
``scatter_add``. Deterministic mode makes PyTorch use ordered kernels or refuse the operation.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from typing import Iterator

import torch

from atso.errors import AtsoError

# cuBLAS reuses workspaces across streams unless told their size; ':4096:8' is what PyTorch documents.
CUBLAS_WORKSPACE = ":4096:8"


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, job: str = "atso") -> Iterator[None]:
    """Within the block, make PyTorch use deterministic kernels (or raise) when ``enabled``; restore after.

    Sets ``torch.use_deterministic_algorithms(True)``, ``CUBLAS_WORKSPACE_CONFIG`` (unless already set),
    ``torch.backends.cudnn.benchmark = False`` and ``torch.backends.cudnn.deterministic = True``.

    Raises:
        AtsoError: an operation in the block has no deterministic kernel (naming ``job`` and the operation).
    """
    if not enabled:
        yield
        return
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    except RuntimeError as error:
        if not is_nondeterministic_error(error):
            raise
        operation = str(error).split(" does not have", 1)[0].strip()
        raise AtsoError(
            f"{job}: {operation} has no deterministic implementation on this device; "
            "set runtime.deterministic=false, or choose a model without this operation"
        ) from error
    finally:
        enabled_before, warn_only, benchmark, cudnn_deterministic, workspace = previous
        torch.use_deterministic_algorithms(enabled_before, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.backends.cudnn.deterministic = cudnn_deterministic
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def is_nondeterministic_error(error: BaseException) -> bool:
    """Whether ``error`` is PyTorch refusing an operation that has no deterministic kernel."""
    return isinstance(error, RuntimeError) and "does not have a deterministic implementation" in str(error)


def job_seed(base_seed: int, job_id: str) -> int:
    """A per-job seed: students of one generation differ, reruns agree."""
    return (base_seed * 1_000_003 + zlib.crc32(job_id.encode())) % (2**31)
