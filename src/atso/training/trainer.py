"""Train one network on given pairs: SGD, poly schedule, cross-entropy with ignore, resumable."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from atso.data.datasets import IterationBatches, TrainingDataset
from atso.errors import AtsoError
from atso.running.faults import maybe_crash
from atso.storage import atomic_save_torch

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
        total = torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
        return total / (target != ignore_index).sum().clamp(min=1)

    return loss


def poly_factor(iteration: int, total: int, power: float) -> float:
    """The poly schedule's learning-rate multiplier: (1 - t/T)^power."""
    return max(0.0, 1.0 - iteration / total) ** power


def train(
    model: torch.nn.Module,
    dataset: TrainingDataset,
    settings: TrainingSettings,
    state_path: Path,
    job_name: str,
    loss_fn: LossFunction | None = None,
    fault_point: str | None = None,
    metadata: dict | None = None,
) -> list[float]:
    """Train ``model`` in place for ``settings.iterations``, continuing from ``state_path`` if it exists.

    The full training state (weights, optimizer, schedule, iteration) is written atomically every
    ``checkpoint_every`` iterations and at the end, so a killed job resumes where it stood.

    Returns:
        The mean loss of every ``log_every`` iterations run in this call.

    Raises:
        AtsoError: the loss becomes NaN or inf (naming the job and iteration).
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
    if state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["iteration"])
    use_amp = settings.amp and device.type == "cuda"
    loader = DataLoader(
        dataset,
        batch_sampler=IterationBatches(start, total, dataset.batch_size),
        num_workers=settings.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )

    def save_state(iteration: int) -> None:
        atomic_save_torch(
            state_path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "iteration": iteration,
                "job": job_name,
                "metadata": metadata or {},
            },
        )

    model.train()
    progress = tqdm(
        total=total, initial=start, desc=job_name, disable=settings.quiet, dynamic_ncols=True, leave=False
    )
    running = torch.zeros((), device=device)
    losses: list[float] = []
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
        running += loss.detach()
        done = iteration + 1
        if done % settings.log_every == 0 or done == total:
            mean_loss = float(running) / (settings.log_every if done % settings.log_every == 0 else done % settings.log_every)
            running.zero_()
            losses.append(mean_loss)
            if not math.isfinite(mean_loss):
                raise AtsoError(
                    f"{job_name}: loss became {mean_loss} by iteration {done}; lower train.lr or check the targets"
                )
            progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        progress.update(1)
        if done % settings.checkpoint_every == 0 or done == total:
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise AtsoError(f"{job_name}: weights became NaN or inf by iteration {done}; lower train.lr")
            save_state(done)
        if fault_point is not None:
            maybe_crash(f"{fault_point}:{done}")
    progress.close()
    model.eval()
    return losses
