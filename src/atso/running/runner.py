"""Execute a plan job by job against a run directory: skip what is finished, run the rest, record it.

For each job: skip it if the manifest records it finished, else ``STAGES[job.kind](job, context)``,
then record its outputs. With ``runtime.workers`` or ``runtime.devices`` the ready jobs run at once,
each in its own process (:mod:`atso.running.scheduler`), through the function the caller hands in.
Under torchrun every process takes part in every job (:mod:`atso.runtime.distributed`) and rank 0
writes the run directory's files.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch

from atso.errors import AtsoError
from atso.running.context import RunContext
from atso.running.run_dir import RunDirectory
from atso.running.scheduler import JobFunction, WorkerPool, run_parallel, worker_devices
from atso.running.stages import STAGES
from atso.runtime import distributed
from atso.runtime.determinism import deterministic_algorithms
from atso.runtime.faults import maybe_crash
from atso.runtime.threads import ThreadSetting, apply_threads, lone_job_threads, resolve_threads
from atso.storage import atomic_write_text, read_json
from atso.strategies.plan import EvaluateJob, Job, Plan


def run_plan(context: RunContext, run_elsewhere: JobFunction, only: str | None = None, threads: int | None = None) -> None:
    """Run every unfinished job in plan order (or just ``only``).

    Args:
        run_elsewhere: what a worker process calls to run one job of the run directory, when jobs run
            in parallel (``atso.api.run_job``).
        threads: this job's intra-op threads, as the scheduler gave them (default: ``runtime.threads``).
    """
    plan, run_dir = context.plan, context.run_dir
    if distributed.is_main():
        context.write_split()
        atomic_write_text(run_dir.path / "plan.txt", plan.format() + "\n")
    jobs = [plan.job(only)] if only else list(plan.jobs)
    devices = worker_devices(context.config.runtime)
    # Once per run or job, before its first tensor operation; a worker process finds its share in OMP_NUM_THREADS.
    setting = resolve_threads(context.config.runtime.threads, len(devices))
    apply_threads(threads or setting.count)
    if only is None:
        context.log(f"threads: {setting.describe()}")
    if only is None and len(devices) > 1:
        if distributed.is_distributed():
            raise AtsoError(
                "runtime.workers / runtime.devices: parallel jobs do not combine with torchrun; use one or the other"
            )
        finished = run_dir.finished_jobs()
        if any(job.id not in finished for job in jobs):
            with WorkerPool(devices, setting.count, run_elsewhere) as pool:
                run_parallel(run_dir, jobs, pool, log=context.log, job_threads=job_threads(plan, setting))
    else:
        for job in jobs:
            run_job(job, context)
    if distributed.is_main():
        # Under the run directory's lock, so of two job processes the last writer sees both jobs finished.
        with run_dir.locked():
            run_dir.write_metrics_lines(records(run_dir, plan))


def job_threads(plan: Plan, setting: ThreadSetting) -> dict[str, int]:
    """Each job's intra-op threads on parallel workers: every core for a job nothing can run beside, else the share.

    A function of the plan and the setting alone, so a job's numbers never depend on what ran beside it.
    """
    lone, alone = plan.lone_jobs(), lone_job_threads(setting)
    return {job.id: alone if job.id in lone else setting.count for job in plan.jobs}


def run_job(job: Job, context: RunContext) -> None:
    """Run one job unless it is finished; refuse it while its inputs are unfinished or another process runs it."""
    run_dir = context.run_dir
    # Rank 0 holds the job's lock for all ranks. While it is held no other process can finish the
    # job, so every rank reads the same answer from the manifest.
    with run_dir.job_lock(job.id) if distributed.is_main() else contextlib.nullcontext():
        distributed.barrier()
        if run_dir.is_finished(job.id):
            return
        missing = [needed for needed in job.inputs if not run_dir.is_finished(needed)]
        if missing:
            raise AtsoError(f"job {job.id}: its inputs are not finished yet ({', '.join(missing)}); run those first")
        started = time.perf_counter()
        with deterministic_algorithms(context.config.runtime.deterministic, job=job.id):
            outputs = STAGES[job.kind](job, context)
        elapsed = time.perf_counter() - started
        if distributed.is_main():
            run_dir.mark_finished(job.id, outputs, elapsed, threads=torch.get_num_threads())
            context.log(f"finished {job.id} ({job.kind}) in {elapsed:.1f}s{_summary_suffix(outputs)}")
        distributed.barrier()
    maybe_crash(f"after:{job.id}")


def records(run_dir: RunDirectory, plan: Plan) -> list[dict[str, Any]]:
    """Metrics of the finished evaluation jobs, in plan order."""
    out = []
    for job in plan.jobs:
        path = run_dir.metrics_file(job.id)
        if isinstance(job, EvaluateJob) and run_dir.is_finished(job.id) and path.is_file():
            out.append(read_json(path))
    return out


def _summary_suffix(outputs: dict[str, Any]) -> str:
    """A job line's numbers, each with its unit: scores in % (the files keep fractions of 1), loss as is."""
    parts = []
    final_loss = outputs.get("final_loss")
    if isinstance(final_loss, float):
        parts.append(f"final loss {final_loss:.4g}")
    speed = outputs.get("images_per_second")
    if isinstance(speed, float):
        parts.append(f"{speed:.4g} images/s")
    for key, name in (("test_miou", "test mIoU"), ("reference_miou", "@R mIoU"), ("test_dice", "test DSC"),
                      ("reference_dice", "@R DSC")):
        value = outputs.get(key)
        if isinstance(value, float):
            parts.append(f"{name} {100 * value:.2f} %")
    return (": " + ", ".join(parts)) if parts else ""
