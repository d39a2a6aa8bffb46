"""Data parallelism under ``torchrun``: one process per GPU (or CPU share), PyTorch's process group and DDP.

``torchrun --nproc_per_node N -m atso run CONFIG ...`` starts N copies of atso with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. :func:`session` joins them into one process
group (NCCL on CUDA, gloo on the CPU); without torchrun every helper here is a no-op, so the same code
runs alone. Rank 0 writes the run directory's files; the other ranks train their share of each batch,
label their share of each fold, and wait at :func:`barrier`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

# Rank 0 evaluates alone while the others wait at a barrier: allow it a long time before a wait counts as a hang.
BARRIER_TIMEOUT = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher with its environment variables) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world() -> World:
    """Rank, world size and local rank in the joined process group; rank 0 of 1 outside one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def is_main() -> bool:
    """Whether this process writes files and prints results: rank 0 (by torchrun's ``RANK``), or the only process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", 0)) == 0


def is_distributed() -> bool:
    """Whether this process trains together with others (a joined process group of two or more)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _wants_cuda(device_name: str) -> bool:
    return device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())


@contextlib.contextmanager
def session(device_name: str) -> Iterator[World]:
    """Join torchrun's process group for the block and leave it after; alone (or already joined), do nothing.

    Args:
        device_name: ``runtime.device``; a CUDA device selects NCCL and this process's GPU
            (``cuda:LOCAL_RANK``), anything else gloo.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) < 2 or dist.is_initialized():
        yield world()
        return
    cuda = _wants_cuda(device_name)
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=BARRIER_TIMEOUT)
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, a CUDA device means this process's own GPU, ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", world().local_rank)
    return device


def barrier() -> None:
    """Wait until every process gets here (no-op alone)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _all_reduce(tensor: torch.Tensor, operation: str) -> torch.Tensor:
    """Reduce in place; NCCL reduces GPU tensors only, so a CPU tensor (counts, scores) travels through this GPU."""
    if not is_distributed():
        return tensor
    op = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN}[operation]
    if dist.get_backend() == "nccl" and tensor.device.type == "cpu":
        on_device = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_device, op=op)
        tensor.copy_(on_device.cpu())
    else:
        dist.all_reduce(tensor, op=op)
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place and return it (unchanged alone)."""
    return _all_reduce(tensor, "sum")


def all_reduce_min(tensor: torch.Tensor) -> torch.Tensor:
    """Minimum of ``tensor`` over all processes, in place (unchanged alone)."""
    return _all_reduce(tensor, "min")


def shard(items: list, rank: int | None = None, size: int | None = None) -> list:
    """This process's share of ``items``: every ``size``-th one from ``rank`` on (all of them alone)."""
    here = world()
    return items[(here.rank if rank is None else rank) :: (here.size if size is None else size)]


def wrap_for_training(model: nn.Module, device: torch.device) -> nn.Module:
    """Synchronised batch norm and ``DistributedDataParallel`` when distributed; ``model`` itself alone.

    ``model`` keeps its parameters (the optimizer and checkpoints use it directly); its batch-norm
    layers are replaced in place by ones whose statistics span the whole global batch, so every
    process normalises as a single process would: ``torch.nn.SyncBatchNorm`` on CUDA, and on the CPU
    :class:`GlooSyncBatchNorm` (PyTorch's SyncBatchNorm runs on GPUs only).
    """
    if not is_distributed():
        return model
    if device.type == "cuda":
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        index = device.index if device.index is not None else torch.cuda.current_device()
        return nn.parallel.DistributedDataParallel(converted, device_ids=[index])
    return nn.parallel.DistributedDataParallel(GlooSyncBatchNorm.convert(model))


class _AllReduceSum(torch.autograd.Function):
    """A sum over processes that gradients flow back through (each process's input gets the summed gradient)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = gradient.clone()
        dist.all_reduce(total)
        return total


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics span all processes, for CPU (gloo) data parallelism.

    The same arithmetic as ``torch.nn.SyncBatchNorm``: mean and biased variance over the global batch
    normalise, the unbiased variance updates ``running_var``. Outside training, or alone, it is plain
    batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        local_count = input.new_full((1,), input.numel() // input.size(1))
        sums = _AllReduceSum.apply(torch.cat([input.sum(dims), local_count]))
        count = sums[-1]
        mean = sums[:-1] / count
        centered = input - mean.view(shape)
        variance = _AllReduceSum.apply((centered * centered).sum(dims)) / count
        output = centered * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - factor).add_(mean.detach() * factor)
                unbiased = variance.detach() * count / (count - 1).clamp(min=1)
                self.running_var.mul_(1 - factor).add_(unbiased * factor)
        return output

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every batch-norm layer under ``module`` by one sharing its parameters and buffers."""
        converted = module
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            converted.running_mean = module.running_mean
            converted.running_var = module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            converted.training = module.training
        for name, child in module.named_children():
            converted.add_module(name, cls.convert(child))
        return converted
