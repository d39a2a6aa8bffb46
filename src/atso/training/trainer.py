"""Train one network on given pairs: SGD, poly schedule, cross-entropy with ignore, resumable.

:meth:`Trainer.run` is a short loop of hooks (nnU-Net's ``run_training()``); what a student adds
(strong augmentation of its pseudo-labeled slots, EMA weights, staged data) is a :class:`Callback`,
not an edit of the loop. A callback's state is saved in the job's ``state.pt`` as plain data.

Under torchrun each process trains its share of every global batch (slots ``rank, rank + W, ...`` of
the iteration-based batch stream) with ``DistributedDataParallel``; the loss is normalised by the
global number of non-ignored pixels, so the gradients equal those of one process up to float error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from atso.data.datasets import IterationBatches
from atso.errors import AtsoError
from atso.runtime import distributed
from atso.runtime.devices import resolve_device
from atso.runtime.faults import maybe_crash
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
    compile: bool = False  # torch.compile the network (runtime.compile)
    num_workers: int = 0
    prefetch_factor: int = 2
    quiet: bool = False
    log_every: int = 10


AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def poly_factor(iteration: int, total: int, power: float) -> float:
    """The poly schedule's learning-rate multiplier: (1 - t/T)^power."""
    return max(0.0, 1.0 - iteration / total) ** power


def _all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating-point tensor is free of NaN and inf, with one host sync for all."""
    checks = [torch.isfinite(tensor).all() for tensor in tensors if tensor.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True


@dataclass(frozen=True)
class Batch:
    """This process's slots of one global batch, on the device, before the forward pass."""

    images: torch.Tensor
    targets: torch.Tensor
    iteration: int  # 0-based
    slots: Sequence[int]  # the global batch's slots these rows are, in order

    def replace(self, **changes: Any) -> "Batch":
        """A copy with new ``images`` / ``targets`` (what a batch transform returns)."""
        return replace(self, **changes)


class Callback:
    """Hooks into :meth:`Trainer.run`; every hook is optional.

    ``name`` keys the callback's state in ``state.pt``: :meth:`state_dict` returns plain data and
    tensors (never objects to unpickle), restored by :meth:`load_state_dict` on resume.
    """

    name = "callback"

    def on_train_start(self, trainer: "Trainer") -> None:
        """After the optimizer and any saved state are loaded, before the first batch."""

    def switch_iterations(self, trainer: "Trainer") -> tuple[int, ...]:
        """Iterations at which :meth:`dataset` may hand out another data stream (staged data)."""
        return ()

    def dataset(self, trainer: "Trainer", iteration: int, dataset: Any) -> Any:
        """The dataset to train on from ``iteration`` (given what the earlier callbacks chose)."""
        return dataset

    def on_batch(self, trainer: "Trainer", batch: Batch) -> Batch:
        """Transform a batch before the forward pass (see :meth:`Trainer.pseudo_slots`)."""
        return batch

    def on_step_end(self, trainer: "Trainer", iteration: int) -> None:
        """After the optimizer step of 1-based ``iteration`` (e.g. an EMA of the weights)."""

    def on_log(self, trainer: "Trainer", iteration: int, loss: float, lr: float) -> None:
        """Every ``log_every`` iterations and at the end, with the mean loss over all processes."""

    def on_train_end(self, trainer: "Trainer") -> None:
        """After the last iteration and its checkpoint."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class LogTo(Callback):
    """Hands the log lines to a function ``(iteration, mean loss, lr)``, e.g. TensorBoard's."""

    name = "log"

    def __init__(self, function: LogCallback) -> None:
        self.function = function

    def on_log(self, trainer: "Trainer", iteration: int, loss: float, lr: float) -> None:
        self.function(iteration, loss, lr)


class Trainer:
    """Trains ``model`` in place for ``settings.iterations``, continuing from ``state_path`` if it exists.

    The full training state (weights, optimizer, schedule, iteration, callbacks) is written atomically
    every ``checkpoint_every`` iterations and at the end, so a killed job resumes where it stood.
    ``loss_fn(logits, target)`` returns the mean over the batch's pixels that are not the ignore index.

    Every iteration's loss is checked for NaN and inf on the device, without waiting for it; the
    check is read every ``log_every`` and ``checkpoint_every`` iterations, before any checkpoint is
    written, so no state file ever holds weights trained on a non-finite loss.

    Under torchrun (see :mod:`atso.runtime.distributed`) every process runs it with the same
    arguments; ``dataset.batch_size`` is the global batch, each process loads its slots of it, and
    only rank 0 writes ``state_path``.

    Raises:
        AtsoError: the loss becomes NaN or inf (naming the job and the first such iteration), or the
            weights do (naming the checkpoint iteration).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: Any,
        settings: TrainingSettings,
        state_path: Path,
        job_name: str,
        loss_fn: LossFunction | None = None,
        callbacks: Sequence[Callback] = (),
        fault_point: str | None = None,
        metadata: dict | None = None,
    ) -> None:
        self.model, self.dataset, self.settings = model, dataset, settings
        self.state_path, self.job_name, self.fault_point = state_path, job_name, fault_point
        self.callbacks, self.metadata = list(callbacks), metadata or {}
        self.device = resolve_device(settings.device)
        self.world = distributed.world()
        if dataset.batch_size < self.world.size:
            raise AtsoError(
                f"{job_name}: train.batch_size ({dataset.batch_size}) is the global batch and must be at least the "
                f"number of processes ({self.world.size}); raise it or start fewer processes"
            )
        self.loss_fn = loss_fn or cross_entropy(dataset.description.ignore_index)
        self.start = 0  # the iteration this process started (or resumed) at
        self.losses: list[float] = []

    def run(self) -> list[float]:
        """Train; return the mean loss of every ``log_every`` iterations of the job (a resumed job included)."""
        self.on_train_start()
        for batch in self.batches():
            for callback in self.callbacks:
                batch = callback.on_batch(self, batch)
            self.train_step(batch)
            done = batch.iteration + 1
            for callback in self.callbacks:
                callback.on_step_end(self, done)
            logging = done % self.settings.log_every == 0 or done == self.settings.iterations
            checkpointing = done % self.settings.checkpoint_every == 0 or done == self.settings.iterations
            if logging or done % self.settings.checkpoint_every == 0:
                self.check_loss()
            if logging:
                self.on_log(done)
            self.progress.update(1)
            if checkpointing:
                self.save_checkpoint(done)
            if self.fault_point is not None:
                maybe_crash(f"{self.fault_point}:{done}")
        self.on_train_end()
        return self.losses

    def on_train_start(self) -> None:
        """Move the model, build optimizer, schedule and scaler, and load the saved state if any."""
        settings, device, model = self.settings, self.device, self.model
        self.memory_format = torch.channels_last if settings.channels_last else torch.preserve_format
        model.to(device)
        if settings.channels_last:
            model.to(memory_format=torch.channels_last)
        self.network = distributed.wrap_for_training(model, device)  # DDP with synchronised batch norm, or model itself
        if settings.compile:  # in place: the model's state dict keeps its keys, so checkpoints do not change
            self.network.compile()
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
        total = settings.iterations
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: poly_factor(it, total, settings.poly_power)
        )
        self.use_amp = settings.amp and device.type == "cuda"
        self.amp_dtype = AMP_DTYPES[settings.amp_dtype]
        # float16 needs its gradients scaled against underflow; the scaler's skip test reads one value per step.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        # This process's share of the sum of the losses since the last log; summed over processes when read.
        self.running = torch.zeros((), device=device)
        if self.state_path.is_file():
            self.load_checkpoint()
        for callback in self.callbacks:
            callback.on_train_start(self)
        self.network.train()
        self.progress = tqdm(
            total=total, initial=self.start, desc=self.job_name, disable=settings.quiet or not self.world.is_main,
            dynamic_ncols=True, leave=False,
        )
        # The first iteration (1-based) whose loss was NaN or inf, -1 while none: kept on the device and
        # read only at log and checkpoint time, so checking every iteration costs no host sync.
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)

    def load_checkpoint(self) -> None:
        state = load_torch(self.state_path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.start = int(state["iteration"])
        self.losses = list(state.get("losses", []))
        if self.world.is_main:  # the saved sum is already over all processes
            self.running.fill_(float(state.get("running_loss", 0.0)))
        for callback in self.callbacks:
            if callback.name in state.get("callbacks", {}):
                callback.load_state_dict(state["callbacks"][callback.name])

    def batches(self) -> Iterator[Batch]:
        """This process's slots of every global batch from ``start``, on the device; callbacks may switch the data."""
        total, world = self.settings.iterations, self.world
        switches = {i for c in self.callbacks for i in c.switch_iterations(self) if self.start < i < total}
        bounds = [self.start, *sorted(switches), total]
        # Rank r loads slots r, r + W, ... of every global batch: the same items, augmented the same way.
        slots = range(world.rank, self.dataset.batch_size, world.size)
        for begin, end in zip(bounds, bounds[1:]):
            dataset = self.dataset
            for callback in self.callbacks:
                dataset = callback.dataset(self, begin, dataset)
            self.current_dataset = dataset
            loader = DataLoader(
                dataset,
                batch_sampler=IterationBatches(begin, end, dataset.batch_size, slots=slots),
                num_workers=self.settings.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.settings.num_workers > 0,
                prefetch_factor=self.settings.prefetch_factor if self.settings.num_workers > 0 else None,
            )
            for iteration, (images, targets) in enumerate(loader, start=begin):
                images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
                yield Batch(images, targets.to(self.device, non_blocking=True), iteration, slots)

    def pseudo_slots(self, batch: Batch) -> torch.Tensor:
        """Per row of ``batch``, whether its target is a pseudo-label (for transforms of the pseudo-labeled part)."""
        stream = self.current_dataset.stream
        pseudo = set(stream.pseudo)
        flags = [stream.index(batch.iteration, slot) in pseudo for slot in batch.slots]
        return torch.tensor(flags, dtype=torch.bool, device=batch.images.device)

    def train_step(self, batch: Batch) -> None:
        """One SGD step on one global batch; the loss is normalised over the global pixel count under DDP."""
        world, targets = self.world, batch.targets
        if world.size > 1:
            # The pixel count of the global batch travels while the forward pass runs.
            local_pixels = (targets != self.dataset.description.ignore_index).sum()
            global_pixels = local_pixels.clone()
            pending = torch.distributed.all_reduce(global_pixels, async_op=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            logits = self.network(batch.images)
        loss = self.loss_fn(logits, targets)
        if world.size > 1:
            pending.wait()
            # This process's share of the global mean; DDP averages gradients, so scale back by W.
            loss = loss * (local_pixels.clamp(min=1) / global_pixels.clamp(min=1))
            objective = loss * world.size
        else:
            objective = loss
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(objective).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        value = loss.detach().float()
        self.running += value
        newly_bad = (self.first_bad < 0) & ~torch.isfinite(value)
        self.first_bad = torch.where(newly_bad, batch.iteration + 1, self.first_bad)
        self.bad_loss = torch.where(newly_bad, value, self.bad_loss)

    def check_loss(self) -> None:
        """Raise if any iteration so far had a non-finite loss on any process (reads the device)."""
        bad_iteration, bad_value = _first_bad(self.first_bad, self.bad_loss, self.settings.iterations)
        if bad_iteration >= 0:
            raise AtsoError(
                f"{self.job_name}: loss became {bad_value} at iteration {bad_iteration}; "
                "lower train.lr (or train.student_lr) or check the targets"
            )

    def on_log(self, done: int) -> None:
        """Record the mean loss since the last log (over all processes) and hand it to the callbacks."""
        log_every = self.settings.log_every
        mean_loss = float(distributed.all_reduce_sum(self.running)) / (
            log_every if done % log_every == 0 else done % log_every
        )
        self.running.zero_()
        self.losses.append(mean_loss)
        lr = self.scheduler.get_last_lr()[0]
        self.progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
        for callback in self.callbacks:
            callback.on_log(self, done, mean_loss, lr)

    def save_checkpoint(self, iteration: int) -> None:
        """Write the training state atomically (rank 0), refusing weights that became NaN or inf."""
        model, optimizer = self.model, self.optimizer
        buffers = [value for slot in optimizer.state.values() for value in slot.values() if torch.is_tensor(value)]
        if not _all_finite([*model.state_dict().values(), *buffers]):
            raise AtsoError(f"{self.job_name}: weights became NaN or inf by iteration {iteration}; lower train.lr")
        running_total = distributed.all_reduce_sum(self.running.clone())
        if not self.world.is_main:
            return
        state: dict[str, Any] = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": iteration,
            "losses": self.losses,
            "running_loss": float(running_total),
            "job": self.job_name,
            "metadata": self.metadata,
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        if self.callbacks:
            state["callbacks"] = {callback.name: callback.state_dict() for callback in self.callbacks}
        atomic_save_torch(self.state_path, state)

    def on_train_end(self) -> None:
        self.progress.close()
        self.model.eval()
        for callback in self.callbacks:
            callback.on_train_end(self)


def _first_bad(first_bad: torch.Tensor, bad_loss: torch.Tensor, total: int) -> tuple[int, float]:
    """The first iteration with a non-finite loss over all processes (-1: none), and that loss; reads the device."""
    if not distributed.is_distributed():
        return int(first_bad), float(bad_loss)
    never = total + 1
    earliest = distributed.all_reduce_min(torch.where(first_bad < 0, never, first_bad))
    # The shares of the loss at that iteration: one non-finite share makes the sum non-finite.
    value = distributed.all_reduce_sum(torch.where(first_bad == earliest, bad_loss, torch.zeros_like(bad_loss)))
    return (-1 if int(earliest) == never else int(earliest)), float(value)
