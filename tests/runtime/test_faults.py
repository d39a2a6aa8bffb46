"""Crash safety: SIGKILL a run at many points, resume it, and get exactly the uninterrupted run's results.

The killed run is a forked child of the test process (a real SIGKILL, without paying for a fresh
interpreter); the resumed run is an ordinary ``api.run`` in the test process. A full disk and a
read-only folder are simulated and must fail with one clear line, leaving a run that finishes on a
plain re-run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from atso import api
from atso.cli import main
from atso.config import Config, config_from_dict
from atso.running.run_dir import RunDirectory

from conftest import run_until_killed, tiny_config, write_dataset

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> tuple[Config, Path]:
    """The tiny ATSO run (M0, one generation of two students, the final model), never interrupted."""
    root = write_dataset(tmp_path_factory.mktemp("data") / "shapes", {"train": 12, "val": 4})
    config = config_from_dict(tiny_config(root))
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    api.run(config, out, log=quiet, report=False)
    return config, out


def metrics_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def temporary_files(out: Path) -> list[Path]:
    return sorted(out.rglob(".*.tmp"))


def job_outputs(out: Path) -> dict[str, dict]:
    """Each finished job's recorded outputs, less its speed."""
    return {
        job: {key: value for key, value in entry["outputs"].items() if key != "images_per_second"}
        for job, entry in RunDirectory(out).finished_jobs().items()
    }


def assert_same_models(out: Path, reference: Path) -> None:
    for model in sorted(reference.rglob("model.pt")):
        weights = torch.load(out / model.relative_to(reference), weights_only=True)["state_dict"]
        expected = torch.load(model, weights_only=True)["state_dict"]
        assert all(torch.equal(weights[key], expected[key]) for key in expected), model


def only_a_temporary_file(relative: str):
    """After the kill: the file is missing and its temporary file is all there is of it."""

    def check(out: Path, sample: str) -> None:
        target = out / relative.format(reference=sample)
        assert not target.exists(), target
        assert list(target.parent.glob(f".{target.name}.*.tmp")), f"no temporary file beside {target}"

    return check


def has_checkpoint(job: str, iteration: int):
    def check(out: Path, sample: str) -> None:
        state = torch.load(out / "jobs" / job / "state.pt", weights_only=True)
        assert state["iteration"] == iteration

    return check


def finished_exactly(*jobs: str):
    def check(out: Path, sample: str) -> None:
        assert set(RunDirectory(out).finished_jobs()) == set(jobs)

    return check


def not_finished(job: str):
    def check(out: Path, sample: str) -> None:
        assert job not in RunDirectory(out).finished_jobs()

    return check


# (fault point, what the run directory must look like right after the kill). '{reference}' is a
# reference sample, so 'write:{reference}.png#2' is its label map being written by the students.
KILL_POINTS = [
    ("write:config.yaml", only_a_temporary_file("config.yaml")),
    ("train:g0/m0:4", has_checkpoint("g0/m0", 3)),
    ("write:state.pt", only_a_temporary_file("jobs/g0/m0/state.pt")),
    ("write:model.pt", only_a_temporary_file("jobs/g0/m0/model.pt")),
    ("write:manifest.json#2", not_finished("g0/m0")),
    ("label:g0/labels:3", not_finished("g0/labels")),
    ("write:{reference}.png", only_a_temporary_file("jobs/g0/labels/labels/{reference}.png")),
    ("write:metrics.json", only_a_temporary_file("jobs/g0/eval/metrics.json")),
    ("after:g0/eval", finished_exactly("g0/m0", "g0/labels", "g0/eval")),
    ("train:atso/g1/student-2:5", has_checkpoint("atso/g1/student-2", 3)),
    ("write:state.pt#7", only_a_temporary_file("jobs/atso/g1/student-2/state.pt")),
    ("label:atso/g1/labels:2#2", not_finished("atso/g1/labels")),
    ("write:{reference}.png#2", only_a_temporary_file("jobs/atso/g1/labels/labels/{reference}.png")),
    ("train:atso/final/model:5", has_checkpoint("atso/final/model", 3)),
    ("write:model.pt#4", only_a_temporary_file("jobs/atso/final/model/model.pt")),
    ("write:metrics.jsonl", only_a_temporary_file("metrics.jsonl")),
]


@pytest.mark.parametrize("point, check", KILL_POINTS, ids=[point for point, _ in KILL_POINTS])
def test_killed_run_resumes_to_the_same_results(baseline, tmp_path, point, check):
    config, reference = baseline
    sample = Path((reference / "splits" / "reference_fold_1.txt").read_text().split()[0]).stem
    out = tmp_path / "run"
    run_until_killed(config, out, point.format(reference=sample))
    check(out, sample)
    finished_before = RunDirectory(out).finished_jobs()

    api.run(config, out, log=quiet, report=False)

    assert metrics_lines(out) == metrics_lines(reference)
    assert job_outputs(out) == job_outputs(reference)
    assert_same_models(out, reference)
    assert temporary_files(out) == []
    finished_after = RunDirectory(out).finished_jobs()
    for job, entry in finished_before.items():  # nothing finished ran again
        assert finished_after[job] == entry, job


@pytest.mark.parametrize("point", ["label:g0/labels:3", "label:atso/g1/labels:4"])
def test_labeling_killed_after_some_files_resumes_to_the_same_label_files(baseline, tmp_path, point):
    """Label files are flushed once per job, not one by one: those a killed job left are kept, flushed and equal."""
    config, reference = baseline
    out = tmp_path / "run"
    run_until_killed(config, out, point)
    job = point.split(":")[1]
    left = sorted(path.name for path in RunDirectory(out).labels_dir(job).glob("*.png"))
    assert len(left) == int(point.rsplit(":", 1)[1]) and job not in RunDirectory(out).finished_jobs()

    api.run(config, out, log=quiet, report=False)

    expected = sorted(reference.rglob("labels/*.png"))
    assert [path.relative_to(reference) for path in expected] == [
        path.relative_to(out) for path in sorted(out.rglob("labels/*.png"))
    ]
    for path in expected:
        assert (out / path.relative_to(reference)).read_bytes() == path.read_bytes(), path
    test_labels = sorted((reference / "jobs/g0/m0/test_labels").iterdir())
    assert [(p.name, p.read_bytes()) for p in test_labels] == [
        (p.name, p.read_bytes()) for p in sorted((out / "jobs/g0/m0/test_labels").iterdir())
    ]
    assert metrics_lines(out) == metrics_lines(reference)


def test_kill_while_the_report_is_written(baseline, tmp_path):
    pytest.importorskip("atso.reporting.report")
    config, reference = baseline
    out = tmp_path / "run"
    run_until_killed(config, out, "write:index.html", report=True)
    only_a_temporary_file("report/index.html")(out, "")
    assert metrics_lines(out) == metrics_lines(reference)  # the results were complete before the report
    result = api.run(config, out, log=quiet, report=True)
    assert Path(result["report"]).is_file()
    assert temporary_files(out) == []


def _cli_run(config: Config, tmp_path: Path, out: Path) -> int:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    return main(["run", str(config_file), "--out", str(out), "--quiet"])


def _fail_writes(monkeypatch, name: str, error: OSError, where: str) -> None:
    """Make writing files called ``name`` fail: at the rename (``replace``) or at creation (``create``)."""
    import atso.storage as storage

    if where == "replace":
        real = os.replace

        def replace(source, target, *args, **kwargs):
            if Path(target).name == name:
                raise error
            return real(source, target, *args, **kwargs)

        monkeypatch.setattr(storage.os, "replace", replace)
    else:
        real_mkstemp = storage.tempfile.mkstemp

        def mkstemp(*args, prefix="", **kwargs):
            if prefix == f".{name}.":
                raise error
            return real_mkstemp(*args, prefix=prefix, **kwargs)

        monkeypatch.setattr(storage.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize(
    "name, error, where, message",
    [
        ("metrics.json", OSError(28, "No space left on device"), "replace", "No space left on device"),
        ("model.pt", OSError(30, "Read-only file system"), "create", "Read-only file system"),
    ],
    ids=["disk-full", "read-only"],
)
def test_failed_write_is_one_line_and_the_run_resumes(baseline, tmp_path, monkeypatch, capsys, name, error, where, message):
    config, reference = baseline
    out = tmp_path / "run"
    _fail_writes(monkeypatch, name, error, where)
    assert _cli_run(config, tmp_path, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and message in err, err
    assert temporary_files(out) == []
    assert name not in {path.name for path in out.rglob("*")}

    monkeypatch.undo()
    assert _cli_run(config, tmp_path, out) == 0
    assert metrics_lines(out) == metrics_lines(reference)
