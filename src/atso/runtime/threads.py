"""``runtime.threads``: how many threads a job's tensor operations use, and how idle OpenMP threads wait.

Two things make atso beside another busy process collapse instead of slowing down in proportion:

* **Too many threads.** PyTorch starts one intra-op thread per core it sees, in every process; two
  jobs on two cores then run four threads. ``auto`` gives each job the cores this process may use
  (``os.sched_getaffinity``) divided by the jobs that run at once (``runtime.workers``), at least 1,
  unless the environment already sets ``OMP_NUM_THREADS`` (torchrun does, and so does a user who
  shares a machine), which is respected. A whole number in ``runtime.threads`` wins over both.
* **Spinning.** Between two parallel regions GNU OpenMP (PyTorch's CPU backend) keeps its threads
  spinning, by default for 300,000 rounds (milliseconds), rather than sleeping. Alone that saves a
  wake-up per layer; beside another process it burns the very core the other process waits for, in
  every layer of every batch. Measured on 2 cores, ``small_unet`` (base 8) training at 64x80 with 2
  threads: alone 178 images/s spinning that long, 127 at 10,000 rounds, 90 at 1,000, 92 sleeping at
  once (``OMP_WAIT_POLICY=PASSIVE``), 86 at 1 thread; beside two busy one-thread processes 2.9, 43,
  52 and 47. The ``atso`` command and the scheduler's worker processes (:func:`worker_environment`)
  therefore let threads spin :data:`SPIN_COUNT` rounds (``GOMP_SPINCOUNT``). OpenMP reads it once, when PyTorch is loaded, so they
  cannot be a config key; it is not set where the user set ``OMP_WAIT_POLICY``,
  ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME`` (e.g. ``GOMP_SPINCOUNT=300000`` on a machine of its own).

CPU kernels are deterministic at a given thread count, but another count sums in another order and
changes results in their last bits (a forward pass of ``small_unet`` at 1 and 2 threads: 9e-8). So a
job's count follows from the run's settings and its plan alone, never from what else happens to be
running: with parallel workers under ``auto``, a job that nothing can run beside takes every core
(:func:`lone_job_threads`) and the others their share. The count is recorded beside each job's wall
time in the manifest. Like every runtime setting it is left out of a run's fingerprint.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, MutableMapping

THREADS_VARIABLE = "OMP_NUM_THREADS"
WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"
SPIN_VARIABLE = "GOMP_SPINCOUNT"
_WAITING_VARIABLES = (WAIT_POLICY_VARIABLE, SPIN_VARIABLE, "KMP_BLOCKTIME")


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadSetting:
    """The intra-op thread count of this process, and where it came from (for the log)."""

    count: int
    source: str
    auto: bool = False  # chosen by atso (``auto`` without OMP_NUM_THREADS), so a job alone may take every core

    def describe(self) -> str:
        policy = "".join(f", {name}={os.environ[name]}" for name in _WAITING_VARIABLES if name in os.environ)
        return f"{self.count} intra-op thread{'s' if self.count != 1 else ''} ({self.source}{policy})"


def resolve_threads(
    threads: int | str, workers: int = 1, environ: MutableMapping[str, str] | None = None, cores: int | None = None
) -> ThreadSetting:
    """The thread count ``runtime.threads`` asks for, with ``workers`` jobs running at once.

    Args:
        threads: a whole number, or ``auto``.
        workers: jobs of the run that may run at once (each in its own process).
        environ: the environment read for ``OMP_NUM_THREADS`` (default: this process's).
        cores: the cores this process may use (default: :func:`available_cores`).
    """
    if not isinstance(threads, str):
        return ThreadSetting(int(threads), "runtime.threads")
    environ = os.environ if environ is None else environ
    given = environ.get(THREADS_VARIABLE, "").strip()
    if given.isdigit() and int(given) > 0:
        return ThreadSetting(int(given), f"{THREADS_VARIABLE}={given}")
    cores = available_cores() if cores is None else cores
    workers = max(1, workers)
    count = max(1, cores // workers)
    return ThreadSetting(
        count, f"auto: {cores} core{'s' if cores != 1 else ''} / {workers} worker{'s' if workers != 1 else ''}", auto=True
    )


def lone_job_threads(setting: ThreadSetting, cores: int | None = None) -> int:
    """The threads of a job that nothing else can run beside: every core under ``auto``, else the setting.

    Fixed per job, not by what happens to be running: a job's numbers depend on its thread count.
    """
    if not setting.auto:
        return setting.count
    return max(setting.count, available_cores() if cores is None else cores)


_interop_set = False


def apply_threads(count: int) -> None:
    """Set this process's intra-op threads (and, the first time, while it still can, its inter-op threads)."""
    global _interop_set
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    if not _interop_set:
        _interop_set = True
        try:  # PyTorch allows this once, before any inter-op work has started
            torch.set_num_interop_threads(count)
        except RuntimeError:
            pass


SPIN_COUNT = "10000"  # GOMP_SPINCOUNT of the atso command: most of spinning's speed alone, no collapse beside others


def prefer_brief_spinning(environ: MutableMapping[str, str] | None = None) -> None:
    """Let idle OpenMP threads spin :data:`SPIN_COUNT` rounds, then sleep, unless the user chose; before PyTorch is imported."""
    environ = os.environ if environ is None else environ
    if not any(variable in environ for variable in _WAITING_VARIABLES):
        environ[SPIN_VARIABLE] = SPIN_COUNT


@contextlib.contextmanager
def worker_environment(threads: int) -> Iterator[None]:
    """The environment worker processes start in: ``threads`` OpenMP threads that spin briefly, then sleep.

    A spawned worker inherits this process's environment when it starts and loads PyTorch (and
    OpenMP) before it runs any atso code, so what it should read at that moment is set here and
    restored afterwards.
    """
    saved = {variable: os.environ.get(variable) for variable in (THREADS_VARIABLE, SPIN_VARIABLE)}
    os.environ[THREADS_VARIABLE] = str(threads)
    prefer_brief_spinning()
    try:
        yield
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
