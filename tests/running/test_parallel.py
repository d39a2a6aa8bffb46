"""Fold parallelism: jobs in several processes on one run directory equal the sequential run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from atso import api
from atso.config import RuntimeConfig, config_from_dict
from atso.errors import AtsoError
from atso.running.run_dir import RunDirectory
from atso.running.scheduler import WorkerPool, run_parallel, worker_devices
from atso.runtime.threads import SPIN_COUNT, available_cores
from atso.strategies.plan import build_plan

from conftest import tiny_config

STUDENTS = ("atso/g1/student-1", "atso/g1/student-2")


def _job_process(out, job_id) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ATSO_FAULT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "atso", "job", str(out), job_id, "--device", "cpu", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_concurrent_job_processes_keep_the_run_directory_consistent(tiny_dataset, tmp_path):
    config = config_from_dict(tiny_config(tiny_dataset))
    out = tmp_path / "run"
    run_dir = RunDirectory(out)
    run_dir.prepare(config)
    for job_id in ("g0/m0", "g0/labels", "g0/eval"):
        api.run_job(out, job_id, log=lambda line: None)

    # The two students of generation 1 at the same time, in two processes; meanwhile a third process
    # asks for a job that is running elsewhere (its lock held here).
    with run_dir.job_lock("atso/g1/labels"):
        processes = [_job_process(out, job_id) for job_id in (*STUDENTS, "atso/g1/labels")]
        outputs = [process.communicate(timeout=300) for process in processes]
    results = [(process.returncode, stderr) for process, (_, stderr) in zip(processes, outputs)]
    for returncode, stderr in results[:2]:
        assert returncode == 0, stderr
    finished = run_dir.finished_jobs()
    assert set(STUDENTS) <= set(finished)
    assert all(run_dir.model_path(job_id).is_file() for job_id in STUDENTS)
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("state.pt"))
    json.loads(run_dir.manifest_path.read_text())  # whole, not interleaved

    returncode, stderr = results[2]
    assert returncode == 2
    assert "atso/g1/labels is running in another process" in stderr and len(stderr.strip().splitlines()) == 1
    assert "atso/g1/labels" not in run_dir.finished_jobs()
    with pytest.raises(AtsoError, match="inputs are not finished"):
        api.run_job(out, "atso/final/model", log=lambda line: None)


def test_workers_give_the_metrics_of_the_sequential_run(tiny_dataset, tmp_path):
    raw = tiny_config(tiny_dataset, train={"iterations": 40, "student_iterations": 20, "lr": 0.1})
    api.run(config_from_dict(raw), tmp_path / "sequential", log=lambda line: None, report=False)
    raw["runtime"]["workers"] = 2
    lines: list[str] = []
    api.run(config_from_dict(raw), tmp_path / "parallel", log=lines.append, report=False)

    metrics = [(tmp_path / name / "metrics.jsonl").read_text() for name in ("sequential", "parallel")]
    assert metrics[0] == metrics[1]
    sequential, parallel = RunDirectory(tmp_path / "sequential"), RunDirectory(tmp_path / "parallel")
    assert parallel.finished_jobs().keys() == sequential.finished_jobs().keys()
    for job_id in ("g0/m0", *STUDENTS, "atso/final/model"):
        a = torch.load(sequential.model_path(job_id), weights_only=True)["state_dict"]
        b = torch.load(parallel.model_path(job_id), weights_only=True)["state_dict"]
        assert all(torch.equal(a[name], b[name]) for name in a), job_id
    assert any("worker 2" in line for line in lines)  # both workers took jobs
    assert not list((tmp_path / "parallel").rglob("*.tmp"))


def test_a_failing_job_stops_the_run_with_its_one_line_error(tiny_dataset, tmp_path):
    raw = tiny_config(tiny_dataset, train={"lr": 1e6}, runtime={"workers": 2})
    with pytest.raises(AtsoError, match=r"g0/m0: (loss|weights) became") as error:
        api.run(config_from_dict(raw), tmp_path / "run", log=lambda line: None, report=False)
    assert "\n" not in str(error.value)
    assert RunDirectory(tmp_path / "run").finished_jobs() == {}


def test_devices_or_workers():
    assert worker_devices(RuntimeConfig(devices=["cuda:0", "cuda:1"])) == ["cuda:0", "cuda:1"]
    assert worker_devices(RuntimeConfig(device="cpu", workers=3)) == ["cpu"] * 3
    with pytest.raises(ValueError, match="not both"):
        RuntimeConfig(devices=["cuda:0"], workers=2)
    with pytest.raises(ValueError, match="not a device"):
        RuntimeConfig(devices=["gpu0"])


def report_environment(run_dir: str, job_id: str, log, device: str, quiet: bool, threads: int | None) -> None:
    """A job function for a worker process: write down the threads and OpenMP settings it runs with."""
    # (Not OMP_NUM_THREADS: importing this module imports conftest, which pins it to 1 for the tests.)
    seen = {"threads": torch.get_num_threads(), "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"), "given": threads}
    with open(os.path.join(run_dir, "environment.json"), "w") as handle:
        json.dump(seen, handle)


def test_a_worker_starts_with_its_threads_and_brief_spinning(tmp_path, monkeypatch):
    for variable in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"):
        monkeypatch.delenv(variable, raising=False)
    first_job = build_plan("atso", 1, 2).jobs[0]  # M0: no inputs, so it is ready at once
    with WorkerPool(["cpu"], 2, report_environment) as pool:
        run_parallel(RunDirectory(tmp_path), [first_job], pool, log=lambda line: None, job_threads={first_job.id: 3})
    seen = json.loads((tmp_path / "environment.json").read_text())
    # The spin count set before the worker loaded torch; the job is handed its own count beside the worker's.
    assert seen == {"threads": 2, "GOMP_SPINCOUNT": SPIN_COUNT, "given": 3}
    assert "GOMP_SPINCOUNT" not in os.environ and os.environ["OMP_NUM_THREADS"] == "1"  # this process's restored


def test_a_job_nothing_can_run_beside_takes_every_core_and_the_others_their_share(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS")  # atso's own choice (``auto``), not the tests' pinned one
    raw = tiny_config(tiny_dataset, train={"iterations": 4, "student_iterations": 2}, runtime={"workers": 2})
    api.run(config_from_dict(raw), tmp_path / "run", log=lambda line: None, report=False)
    threads = {job: entry["threads"] for job, entry in RunDirectory(tmp_path / "run").finished_jobs().items()}
    cores = available_cores()
    assert threads["g0/m0"] == threads["g0/labels"] == threads["atso/g1/labels"] == cores
    assert threads["atso/g1/student-1"] == threads["g0/eval"] == max(1, cores // 2)
