"""Fold parallelism: the ready jobs of a plan run at once, one per worker process.

A job is ready when every job it reads is recorded finished in the manifest. The scheduler keeps one
worker process per slot (a listed device, or a CPU worker) busy until the plan is done. A worker is
a fresh interpreter (multiprocessing's *spawn*) that runs jobs one at a time through the function it
is handed (``atso.api.run_job``, exactly what ``atso job RUN_DIR JOB_ID --device D`` runs on a
cluster), so jobs meet only through files: the run directory's lock orders manifest writes, and a
job's own lock keeps two processes from running it. A job's seed depends only on its id, and its
thread count only on the plan (:meth:`~atso.strategies.plan.Plan.lone_jobs`), so the results equal
those of running the plan in order at the same counts.

The workers start once per run (:class:`WorkerPool`) and say when PyTorch is loaded, so their
start-up is paid once, not per job or per generation.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Callable, Mapping, Protocol

from atso.config import RuntimeConfig
from atso.errors import AtsoError
from atso.running.run_dir import RunDirectory
from atso.runtime.threads import apply_threads, worker_environment
from atso.strategies.plan import Job

STOP_GRACE_SECONDS = 10.0


class JobFunction(Protocol):
    """Runs one job of a run directory in this process; a module-level function, so a worker can import it."""

    def __call__(
        self, run_dir: str, job_id: str, log: Callable[[str], None], device: str, quiet: bool, threads: int | None
    ) -> None: ...


def worker_devices(runtime: RuntimeConfig) -> list[str]:
    """One device per job that may run at once: ``runtime.devices``, or ``runtime.device`` ``workers`` times."""
    return list(runtime.devices) if runtime.devices else [runtime.device] * runtime.workers


def _worker_main(connection: Connection, device: str, threads: int, run_one: JobFunction) -> None:
    """A worker process: run the jobs the scheduler sends, one at a time, until it sends None."""
    try:
        import torch

        apply_threads(threads)  # first thing: inter-op threads can only be set before any parallel work
        if device.startswith("cuda:"):
            torch.cuda.set_device(torch.device(device))  # anything that uses "the current GPU" uses this one
        connection.send(("ready", None))
        while True:
            request = connection.recv()
            if request is None:
                return
            run_dir, job_id, job_threads = request
            lines: list[str] = []
            try:
                run_one(run_dir, job_id, log=lines.append, device=device, quiet=True, threads=job_threads)
            except AtsoError as error:
                connection.send(("error", str(error)))
            except Exception as error:  # a bug: the full traceback on stderr, one line to the scheduler
                traceback.print_exc()
                connection.send(("error", f"{error.__class__.__name__}: {error}"))
            else:
                connection.send(("finished", lines))
    except (KeyboardInterrupt, EOFError):  # stopped by the scheduler, or the scheduler is gone
        return


@dataclass
class _Worker:
    number: int
    device: str
    process: multiprocessing.process.BaseProcess
    connection: Connection
    job: Job | None = field(default=None)


class WorkerPool:
    """Worker processes kept for a run: one per device, started at once, each loading PyTorch only once.

    Use as a context manager; leaving it lets idle workers go and interrupts busy ones (:func:`_stop`).
    """

    def __init__(self, devices: list[str], threads: int, run_one: JobFunction) -> None:
        self.devices, self.threads, self.run_one = devices, threads, run_one
        self.workers: list[_Worker] = []

    def __enter__(self) -> "WorkerPool":
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited CUDA or thread state
        try:
            for number, device in enumerate(self.devices, start=1):
                here, there = context.Pipe()
                process = context.Process(
                    target=_worker_main, args=(there, device, self.threads, self.run_one), name=f"atso-worker-{number}"
                )
                with worker_environment(self.threads):  # read by OpenMP when the worker loads PyTorch
                    process.start()
                there.close()
                self.workers.append(_Worker(number, device, process, here))
            for worker in self.workers:  # all of them import PyTorch at once, then wait for their first job
                try:
                    worker.connection.recv()
                except EOFError:
                    worker.process.join(1)
                    raise AtsoError(
                        f"worker {worker.number} ({worker.device}) died while starting "
                        f"(exit code {worker.process.exitcode}); its error is above"
                    ) from None
        except BaseException:
            _stop(self.workers)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        _stop(self.workers)


def run_parallel(
    run_dir: RunDirectory,
    jobs: list[Job],
    pool: WorkerPool,
    log: Callable[[str], None] = print,
    job_threads: Mapping[str, int] | None = None,
) -> None:
    """Run ``jobs`` (in plan order, inputs first) on the pool's workers, each as soon as its inputs are finished.

    Args:
        job_threads: job id -> its intra-op threads (default: the pool's share for every job).

    Raises:
        AtsoError: a job failed: its one-line error. The other running jobs are interrupted; their
            checkpoints stay, and running the same command again resumes them.
    """
    waiting = [job for job in jobs if not run_dir.is_finished(job.id)]
    workers = pool.workers
    while waiting or any(worker.job is not None for worker in workers):
        finished = set(run_dir.finished_jobs())
        for job in list(waiting):
            idle = [worker for worker in workers if worker.job is None]
            if not idle:
                break
            if all(needed in finished for needed in job.inputs):
                waiting.remove(job)
                idle[0].job = job
                threads = (job_threads or {}).get(job.id, pool.threads)
                idle[0].connection.send((str(run_dir.path), job.id, threads))
        busy = [worker for worker in workers if worker.job is not None]
        if not busy:
            missing = [needed for needed in waiting[0].inputs if needed not in finished]
            raise AtsoError(
                f"job {waiting[0].id}: its inputs are not finished yet ({', '.join(missing)}); run those first"
            )
        for connection in wait([worker.connection for worker in busy]):
            _collect(next(w for w in busy if w.connection is connection), log)


def _collect(worker: _Worker, log: Callable[[str], None]) -> None:
    """Take a busy worker's answer: its job's log lines, or its error raised here."""
    job, worker.job = worker.job, None
    assert job is not None
    where = f"{worker.device}, worker {worker.number}"
    try:
        status, payload = worker.connection.recv()
    except EOFError:
        worker.process.join(1)
        raise AtsoError(
            f"job {job.id}: its worker process died ({where}, exit code {worker.process.exitcode}); "
            "run the same command again to resume"
        ) from None
    if status == "error":
        raise AtsoError(payload if job.id in payload else f"job {job.id}: {payload}")
    for line in payload:
        log(f"{line} [{where}]")


def _stop(workers: list[_Worker]) -> None:
    """Let idle workers leave; interrupt busy ones like Ctrl-C (temporary files removed, checkpoints kept)."""
    for worker in workers:
        if not worker.process.is_alive():
            continue
        if worker.job is None:
            try:
                worker.connection.send(None)
            except OSError:
                pass
        else:
            try:
                os.kill(worker.process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
    for worker in workers:
        worker.process.join(STOP_GRACE_SECONDS)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.connection.close()
