"""runtime.threads: the count from the usable cores, the workers and OMP_NUM_THREADS; OpenMP waits passively."""

from __future__ import annotations

import os

import pytest
import torch

from atso.runtime.threads import (
    SPIN_COUNT,
    ThreadSetting,
    apply_threads,
    available_cores,
    lone_job_threads,
    prefer_brief_spinning,
    resolve_threads,
    worker_environment,
)


@pytest.mark.parametrize(
    "threads, workers, environ, cores, expected",
    [
        ("auto", 1, {}, 8, 8),  # all the cores this process may use
        ("auto", 2, {}, 8, 4),  # shared by the jobs that run at once
        ("auto", 3, {}, 8, 2),  # rounded down: never more threads than cores
        ("auto", 4, {}, 2, 1),  # at least one
        ("auto", 2, {"OMP_NUM_THREADS": "3"}, 8, 3),  # the environment's choice is respected
        ("auto", 1, {"OMP_NUM_THREADS": "0"}, 8, 8),  # not a thread count: ignored
        ("auto", 1, {"OMP_NUM_THREADS": "4,2"}, 8, 8),  # nested OpenMP lists: ignored
        (2, 4, {"OMP_NUM_THREADS": "6"}, 8, 2),  # a number in the config wins over both
    ],
)
def test_thread_count(threads, workers, environ, cores, expected):
    assert resolve_threads(threads, workers, environ, cores).count == expected


def test_the_source_of_the_count_is_said():
    assert resolve_threads("auto", 2, {}, 4).source == "auto: 4 cores / 2 workers"
    assert resolve_threads("auto", 1, {"OMP_NUM_THREADS": "2"}, 4).source == "OMP_NUM_THREADS=2"
    assert resolve_threads(3, 1, {}, 4).source == "runtime.threads"
    assert ThreadSetting(1, "runtime.threads").describe().startswith("1 intra-op thread (runtime.threads")


def test_available_cores_are_the_affinity_mask():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert available_cores() == expected


def test_apply_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        apply_threads(2)
        assert torch.get_num_threads() == 2
        apply_threads(1)  # a second call (the inter-op count can no longer change) is fine
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, SPIN_COUNT),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, None),  # the user's choice of policy: no spin count imposed over it
        ({"GOMP_SPINCOUNT": "300000"}, "300000"),  # the user's spin count stays
    ],
)
def test_idle_threads_spin_briefly_unless_the_user_chose(environ, expected):
    prefer_brief_spinning(environ)
    assert environ.get("GOMP_SPINCOUNT") == expected


def test_worker_environment_is_set_for_the_start_and_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("KMP_BLOCKTIME", raising=False)
    with worker_environment(3):
        assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["GOMP_SPINCOUNT"] == SPIN_COUNT
    assert os.environ["OMP_NUM_THREADS"] == "1" and "GOMP_SPINCOUNT" not in os.environ


def test_a_lone_job_takes_every_core_only_when_atso_chose_the_count():
    auto = resolve_threads("auto", workers=2, environ={}, cores=4)
    assert (auto.count, lone_job_threads(auto, cores=4)) == (2, 4)
    assert lone_job_threads(resolve_threads(3, workers=2, environ={}, cores=4), cores=4) == 3  # runtime.threads
    pinned = resolve_threads("auto", workers=2, environ={"OMP_NUM_THREADS": "1"}, cores=4)
    assert lone_job_threads(pinned, cores=4) == 1  # the user's OMP_NUM_THREADS is respected
