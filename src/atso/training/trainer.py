"""Train one network on given pairs: SGD, poly schedule, cross-entropy with ignore, resumable.

Under torchrun each process trains its share of every global batch (slots ``rank, rank + W, ...`` of
the iteration-based batch stream) with ``DistributedDataParallel``; the loss is normalised by the
global number of non-ignored pixels, so the gradients equal those of one process up to float error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from atso.data.datasets import IterationBatches, TrainingDataset
from atso.errors import AtsoError
from atso.running import distributed
from atso.running.faults import maybe_crash
from atso.training.losses import LossFunction, cross_entropy
from atso.storage import atomic_save_torch, load_torch

LogCallback = Callable[[int, float, float], None]  # (iteration, mean loss, learning rate), e.g. for TensorBoard


@dataclass(frozen=True)
class TrainingSettings:
    """How long and how fast to train one model."""

    iterations: int
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    checkpoint_every: int = 100
    device: str = "cpu"
    amp: bool = True
    amp_dtype: str = "bfloat16"  # or "float16", with a gradient scaler
    channels_last: bool = False
    num_workers: int = 0
    prefetch_factor: int = 2
    quiet: bool = False
    log_every: int = 10


AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; under torchrun, CUDA is this process's GPU."""
    if name == "auto":
        return distributed.local_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AtsoError(f"runtime.device: '{name}' asked for but CUDA is not available; use cpu or auto")
    return distributed.local_device(device)


def poly_factor(iteration: int, total: int, power: float) -> float:
    """The poly schedule's learning-rate multiplier: (1 - t/T)^power."""
    return max(0.0, 1.0 - iteration / total) ** power


def _all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating-point tensor is free of NaN and inf, with one host sync for all."""
    checks = [torch.isfinite(tensor).all() for tensor in tensors if tensor.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True


def train(
    model: torch.nn.Module,
    dataset: TrainingDataset,
    settings: TrainingSettings,
    state_path: Path,
    job_name: str,
    loss_fn: LossFunction | None = None,
    fault_point: str | None = None,
    metadata: dict | None = None,
    on_log: LogCallback | None = None,
) -> list[float]:
    """Train ``model`` in place for ``settings.iterations``, continuing from ``state_path`` if it exists.

    The full training state (weights, optimizer, schedule, iteration) is written atomically every
    ``checkpoint_every`` iterations and at the end, so a killed job resumes where it stood.
    ``on_log(iteration, mean_loss, lr)`` is called every ``log_every`` iterations and at the end.
    ``loss_fn(logits, target)`` returns the mean over the batch's pixels that are not the ignore index.

    Every iteration's loss is checked for NaN and inf on the device, without waiting for it; the
    check is read every ``log_every`` and ``checkpoint_every`` iterations, before any checkpoint is
    written, so no state file ever holds weights trained on a non-finite loss.

    Under torchrun (see :mod:`atso.running.distributed`) every process calls this with the same
    arguments; ``dataset.batch_size`` is the global batch, each process loads its slots of it, and
    only rank 0 writes ``state_path``.

    Returns:
        The mean loss of every ``log_every`` iterations of the job (a resumed job included).

    Raises:
        AtsoError: the loss becomes NaN or inf (naming the job and the first such iteration), or the
            weights do (naming the checkpoint iteration).
    """
    device = resolve_device(settings.device)
    world = distributed.world()
    if dataset.batch_size < world.size:
        raise AtsoError(
            f"{job_name}: train.batch_size ({dataset.batch_size}) is the global batch and must be at least the "
            f"number of processes ({world.size}); raise it or start fewer processes"
        )
    memory_format = torch.channels_last if settings.channels_last else torch.preserve_format
    model.to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    network = distributed.wrap_for_training(model, device)  # DDP with synchronised batch norm, or model itself
    ignore_index = dataset.description.ignore_index
    loss_fn = loss_fn or cross_entropy(ignore_index)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    total = settings.iterations
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: poly_factor(it, total, settings.poly_power)
    )
    use_amp = settings.amp and device.type == "cuda"
    amp_dtype = AMP_DTYPES[settings.amp_dtype]
    # float16 needs its gradients scaled against underflow; the scaler's skip test reads one value per step.
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    start = 0
    losses: list[float] = []
    # This process's share of the sum of the losses since the last log; summed over processes when read.
    running = torch.zeros((), device=device)
    if state_path.is_file():
        state = load_torch(state_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start = int(state["iteration"])
        losses = list(state.get("losses", []))
        if world.is_main:  # the saved sum is already over all processes
            running.fill_(float(state.get("running_loss", 0.0)))
    # Rank r loads slots r, r + W, ... of every global batch: the same items, augmented the same way.
    slots = range(world.rank, dataset.batch_size, world.size)
    loader = DataLoader(
        dataset,
        batch_sampler=IterationBatches(start, total, dataset.batch_size, slots=slots),
        num_workers=settings.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=settings.num_workers > 0,
        prefetch_factor=settings.prefetch_factor if settings.num_workers > 0 else None,
    )

    def save_state(iteration: int) -> None:
        buffers = [value for slot in optimizer.state.values() for value in slot.values() if torch.is_tensor(value)]
        if not _all_finite([*model.state_dict().values(), *buffers]):
            raise AtsoError(f"{job_name}: weights became NaN or inf by iteration {iteration}; lower train.lr")
        running_total = distributed.all_reduce_sum(running.clone())
        if not world.is_main:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "iteration": iteration,
            "losses": losses,
            "running_loss": float(running_total),
            "job": job_name,
            "metadata": metadata or {},
        }
        if scaler.is_enabled():
            state["scaler"] = scaler.state_dict()
        atomic_save_torch(state_path, state)

    network.train()
    progress = tqdm(
        total=total, initial=start, desc=job_name, disable=settings.quiet or not world.is_main,
        dynamic_ncols=True, leave=False,
    )
    # The first iteration (1-based) whose loss was NaN or inf, -1 while none: kept on the device and
    # read only at log and checkpoint time, so checking every iteration costs no host sync.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    bad_loss = torch.zeros((), device=device)
    for iteration, (images, targets) in enumerate(loader, start=start):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        if world.size > 1:
            # The pixel count of the global batch travels while the forward pass runs.
            local_pixels = (targets != ignore_index).sum()
            global_pixels = local_pixels.clone()
            pending = torch.distributed.all_reduce(global_pixels, async_op=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            logits = network(images)
        loss = loss_fn(logits, targets)
        if world.size > 1:
            pending.wait()
            # This process's share of the global mean; DDP averages gradients, so scale back by W.
            loss = loss * (local_pixels.clamp(min=1) / global_pixels.clamp(min=1))
            objective = loss * world.size
        else:
            objective = loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(objective).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        value = loss.detach().float()
        running += value
        done = iteration + 1
        newly_bad = (first_bad < 0) & ~torch.isfinite(value)
        first_bad = torch.where(newly_bad, done, first_bad)
        bad_loss = torch.where(newly_bad, value, bad_loss)
        logging = done % settings.log_every == 0 or done == total
        if logging or done % settings.checkpoint_every == 0:
            bad_iteration, bad_value = _first_bad(first_bad, bad_loss, total)
            if bad_iteration >= 0:
                raise AtsoError(
                    f"{job_name}: loss became {bad_value} at iteration {bad_iteration}; "
                    "lower train.lr (or train.student_lr) or check the targets"
                )
        if logging:
            mean_loss = float(distributed.all_reduce_sum(running)) / (
                settings.log_every if done % settings.log_every == 0 else done % settings.log_every
            )
            running.zero_()
            losses.append(mean_loss)
            lr = scheduler.get_last_lr()[0]
            progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
            if on_log is not None:
                on_log(done, mean_loss, lr)
        progress.update(1)
        if done % settings.checkpoint_every == 0 or done == total:
            save_state(done)
        if fault_point is not None:
            maybe_crash(f"{fault_point}:{done}")
    progress.close()
    model.eval()
    return losses


def _first_bad(first_bad: torch.Tensor, bad_loss: torch.Tensor, total: int) -> tuple[int, float]:
    """The first iteration with a non-finite loss over all processes (-1: none), and that loss; reads the device."""
    if not distributed.is_distributed():
        return int(first_bad), float(bad_loss)
    never = total + 1
    earliest = distributed.all_reduce_min(torch.where(first_bad < 0, never, first_bad))
    # The shares of the loss at that iteration: one non-finite share makes the sum non-finite.
    value = distributed.all_reduce_sum(torch.where(first_bad == earliest, bad_loss, torch.zeros_like(bad_loss)))
    return (-1 if int(earliest) == never else int(earliest)), float(value)
