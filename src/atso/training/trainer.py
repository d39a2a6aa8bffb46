"""Train one network on given pairs: SGD, poly schedule, cross-entropy with ignore, resumable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from atso.data.datasets import IterationBatches, TrainingDataset
from atso.errors import AtsoError
from atso.running.faults import maybe_crash
from atso.storage import atomic_save_torch

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
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
    num_workers: int = 0
    quiet: bool = False
    log_every: int = 10


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AtsoError(f"runtime.device: '{name}' asked for but CUDA is not available; use cpu or auto")
    return device


def cross_entropy(ignore_index: int) -> LossFunction:
    """Pixel-wise cross-entropy averaged over non-ignored pixels (0, not NaN, for an all-ignored batch)."""

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Per-pixel losses summed by an ordinary reduction: CUDA's own 'sum' reduction adds with atomics,
        # which runtime.deterministic refuses.
        pixels = torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
        return pixels.sum() / (target != ignore_index).sum().clamp(min=1)

    return loss


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

    Every iteration's loss is checked for NaN and inf on the device, without waiting for it; the
    check is read every ``log_every`` and ``checkpoint_every`` iterations, before any checkpoint is
    written, so no state file ever holds weights trained on a non-finite loss.

    Returns:
        The mean loss of every ``log_every`` iterations of the job (a resumed job included).

    Raises:
        AtsoError: the loss becomes NaN or inf (naming the job and the first such iteration), or the
            weights do (naming the checkpoint iteration).
    """
    device = resolve_device(settings.device)
    model.to(device)
    loss_fn = loss_fn or cross_entropy(dataset.description.ignore_index)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    total = settings.iterations
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: poly_factor(it, total, settings.poly_power)
    )
    start = 0
    losses: list[float] = []
    running = torch.zeros((), device=device)  # sum of the losses since the last log
    if state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["iteration"])
        losses = list(state.get("losses", []))
        running.fill_(float(state.get("running_loss", 0.0)))
    use_amp = settings.amp and device.type == "cuda"
    loader = DataLoader(
        dataset,
        batch_sampler=IterationBatches(start, total, dataset.batch_size),
        num_workers=settings.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )

    def save_state(iteration: int) -> None:
        buffers = [value for slot in optimizer.state.values() for value in slot.values() if torch.is_tensor(value)]
        if not _all_finite([*model.state_dict().values(), *buffers]):
            raise AtsoError(f"{job_name}: weights became NaN or inf by iteration {iteration}; lower train.lr")
        atomic_save_torch(
            state_path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "iteration": iteration,
                "losses": losses,
                "running_loss": float(running),
                "job": job_name,
                "metadata": metadata or {},
            },
        )

    model.train()
    progress = tqdm(
        total=total, initial=start, desc=job_name, disable=settings.quiet, dynamic_ncols=True, leave=False
    )
    # The first iteration (1-based) whose loss was NaN or inf, -1 while none: kept on the device and
    # read only at log and checkpoint time, so checking every iteration costs no host sync.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    bad_loss = torch.zeros((), device=device)
    for iteration, (images, targets) in enumerate(loader, start=start):
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(images)
        loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        value = loss.detach().float()
        running += value
        done = iteration + 1
        newly_bad = (first_bad < 0) & ~torch.isfinite(value)
        first_bad = torch.where(newly_bad, done, first_bad)
        bad_loss = torch.where(newly_bad, value, bad_loss)
        logging = done % settings.log_every == 0 or done == total
        if logging or done % settings.checkpoint_every == 0:
            bad_iteration = int(first_bad)
            if bad_iteration >= 0:
                raise AtsoError(
                    f"{job_name}: loss became {float(bad_loss)} at iteration {bad_iteration}; "
                    "lower train.lr (or train.student_lr) or check the targets"
                )
        if logging:
            mean_loss = float(running) / (settings.log_every if done % settings.log_every == 0 else done % settings.log_every)
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
