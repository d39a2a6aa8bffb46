"""The runner on a tiny dataset: outputs, resume after SIGKILL, config guard, R's truth kept out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from atso import api
from atso.config import config_from_dict
from atso.data.splits import choose_labeled
from atso.data.samples import list_samples
from atso.errors import AtsoError
from atso.running.context import RunContext
from atso.running.run_dir import RunDirectory
from atso.storage import atomic_write_json, read_json

from conftest import record_fsyncs, tiny_config


def run_atso(config: dict, out: Path, compare: bool = False) -> dict:
    return api.run(config_from_dict(config), out, compare=compare, log=lambda line: None)


def metrics_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_atso_run_writes_every_output(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    result = run_atso(tiny_config(tiny_dataset), out)
    run_dir = RunDirectory(out)
    finished = run_dir.finished_jobs()
    for job in ("g0/m0", "g0/labels", "atso/g1/student-1", "atso/g1/student-2", "atso/g1/labels", "atso/final/model"):
        assert job in finished
    assert run_dir.model_path("atso/final/model").is_file()
    assert not (run_dir.job_dir("atso/final/model") / "state.pt").exists()
    label_files = sorted(p.name for p in run_dir.labels_dir("atso/g1/labels").glob("*.png"))
    assert len(label_files) == 8  # 12 training samples, 4 labeled
    assert (out / "splits" / "labeled.txt").read_text().count("\n") == 4
    records = metrics_lines(out)
    assert [r["job"] for r in records] == ["g0/eval", "atso/g1/eval", "atso/final/eval"]
    g1 = records[1]
    assert set(g1["test"]) == {"atso/g1/student-1", "atso/g1/student-2", "ensemble"}
    assert 0 <= g1["reference_miou"] <= 1 and 0 <= g1["test_miou"] <= 1
    assert 0 <= g1["changed_fraction"] <= 1
    assert records[0]["agreement_with_m0"]["g0/m0"] == pytest.approx(1.0)
    assert "G1" in result["table"] and "final" in result["table"]


def test_threads_are_applied_once_and_recorded_beside_each_wall_time(tiny_dataset, tmp_path):
    before = torch.get_num_threads()
    lines: list[str] = []
    try:
        api.run(config_from_dict(tiny_config(tiny_dataset, runtime={"threads": 2})), tmp_path / "two", log=lines.append,
                report=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert lines[0].startswith("threads: 2 intra-op threads (runtime.threads")
    assert {entry["threads"] for entry in RunDirectory(tmp_path / "two").finished_jobs().values()} == {2}
    lines.clear()
    run_atso_logged = api.run(config_from_dict(tiny_config(tiny_dataset)), tmp_path / "auto", log=lines.append, report=False)
    assert run_atso_logged["records"]
    assert lines[0].startswith("threads: 1 intra-op thread (OMP_NUM_THREADS=1")  # auto respects the environment
    assert {entry["threads"] for entry in RunDirectory(tmp_path / "auto").finished_jobs().values()} == {1}


def test_a_job_is_recorded_finished_only_after_its_files_are_flushed(tiny_dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_dir = RunDirectory(out)
    run_dir.prepare(config_from_dict(tiny_config(tiny_dataset)))
    api.run_job(out, "g0/m0", log=lambda line: None)
    events: list = record_fsyncs(monkeypatch)
    real = RunDirectory.mark_finished
    monkeypatch.setattr(RunDirectory, "mark_finished", lambda self, job_id, *a, **k: (events.append(job_id), real(self, job_id, *a, **k)))
    for job_id in ("g0/labels", "g0/eval"):
        api.run_job(out, job_id, log=lambda line: None)

    m0_test_labels = run_dir.job_dir("g0/m0") / "test_labels"
    for job_id, files in (("g0/labels", run_dir.labels_dir("g0/labels").glob("*.png")), ("g0/eval", m0_test_labels.glob("*.png"))):
        files = [path.resolve() for path in files]
        assert files
        recorded = events.index(job_id)
        assert all(path in events[:recorded] for path in files), job_id  # each flushed before the manifest entry
    # complete.json, written last (fsynced as its temporary file, before the rename), before the manifest entry
    assert any(isinstance(e, Path) and e.name.startswith(".complete.json.") for e in events[: events.index("g0/eval")])


def test_m0_is_predicted_on_the_test_set_once_per_run(tiny_dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_atso(tiny_config(tiny_dataset), out)
    run_dir = RunDirectory(out)
    folder = run_dir.job_dir("g0/m0") / "test_labels"
    test_ids = [Path(line.split()[0]).stem for line in (out / "splits" / "test.txt").read_text().splitlines()]
    assert sorted(path.name for path in folder.glob("*.png")) == sorted(f"{sample}.png" for sample in test_ids)
    recorded = read_json(run_dir.metrics_file("atso/g1/eval"))  # its agreement with M0 read from the files
    loaded: list[str] = []
    real = RunContext.load_models
    monkeypatch.setattr(RunContext, "load_models", lambda self, job_ids: (loaded.extend(job_ids), real(self, job_ids))[1])

    def evaluate_again() -> dict:
        loaded.clear()
        with run_dir.manifest() as manifest:
            del manifest["jobs"]["atso/g1/eval"]
        api.run_job(out, "atso/g1/eval", log=lambda line: None)
        return read_json(run_dir.metrics_file("atso/g1/eval"))

    assert evaluate_again() == recorded and "g0/m0" not in loaded  # read back, not predicted
    shutil.rmtree(folder)
    assert evaluate_again() == recorded and "g0/m0" in loaded  # predicted again: the very same numbers
    assert (folder / "complete.json").is_file()  # and kept for the next evaluation
    atomic_write_json(folder / "complete.json", {**read_json(folder / "complete.json"), "fingerprint": "another config"})
    assert evaluate_again() == recorded and "g0/m0" in loaded  # made under another config: not trusted


def test_a_second_run_skips_finished_jobs(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(tiny_dataset)
    run_atso(config, out)
    before = RunDirectory(out).finished_jobs()
    run_atso(config, out)
    assert RunDirectory(out).finished_jobs() == before


def test_changed_config_is_refused_unless_forced(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(tiny_dataset, teacher_student={"strategy": "supervised"})
    run_atso(config, out)
    changed = tiny_config(tiny_dataset, teacher_student={"strategy": "supervised"}, train={"lr": 0.01})
    with pytest.raises(AtsoError, match="train.lr"):
        run_atso(changed, out)
    api.run(config_from_dict(changed), out, force=True, log=lambda line: None)


def test_reference_ground_truth_never_reaches_training(tiny_dataset, tmp_path):
    """Scrambling R's masks changes @R only: every trained model is bit-identical."""
    config = tiny_config(tiny_dataset)
    run_atso(config, tmp_path / "a")
    samples = list_samples(config_from_dict(config).data.train)
    _, reference = choose_labeled(samples, count=4, seed=0)
    for sample in reference:
        mask = np.array(Image.open(sample.mask))
        Image.fromarray(np.where(mask == 255, 255, 2 - np.minimum(mask, 2)).astype(np.uint8)).save(sample.mask)
    run_atso(config, tmp_path / "b")
    for job in RunDirectory(tmp_path / "a").finished_jobs():
        model_a = RunDirectory(tmp_path / "a").model_path(job)
        if model_a.is_file():
            weights_a = torch.load(model_a, weights_only=True)["state_dict"]
            weights_b = torch.load(RunDirectory(tmp_path / "b").model_path(job), weights_only=True)["state_dict"]
            assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a), job
    a, b = metrics_lines(tmp_path / "a"), metrics_lines(tmp_path / "b")
    assert [r.get("test_miou") for r in a] == [r.get("test_miou") for r in b]
    assert a[0]["reference_miou"] != b[0]["reference_miou"]


def test_compare_runs_all_strategies_on_one_m0(tiny_dataset, tmp_path):
    result = run_atso(tiny_config(tiny_dataset), tmp_path / "cmp", compare=True)
    strategies = {r["strategy"] for r in result["records"]}
    assert strategies == {"shared", "self-learning", "stso", "atso"}
    header = result["table"].splitlines()[0]
    for name in ("supervised @R", "self-learning @E", "stso @R", "atso @E"):
        assert name in header


def test_same_seed_same_numbers(tiny_dataset, tmp_path):
    config = tiny_config(tiny_dataset)
    run_atso(config, tmp_path / "a")
    run_atso(config, tmp_path / "b")
    assert metrics_lines(tmp_path / "a") == metrics_lines(tmp_path / "b")


def _cli(config_file: Path, out: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("ATSO_FAULT", None)
    env["OMP_NUM_THREADS"] = "1"
    if fault:
        env["ATSO_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "atso", "run", str(config_file), "--out", str(out), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )


# One kill of a real `python -m atso` process; tests/runtime/test_faults.py kills runs at many more points.
@pytest.mark.parametrize("fault", ["train:atso/g1/student-1:4"])
def test_resume_after_sigkill_gives_the_same_metrics(tiny_dataset, tmp_path, fault):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tiny_dataset)))
    reference = tmp_path / "uninterrupted"
    assert _cli(config_file, reference).returncode == 0
    out = tmp_path / "interrupted"
    crashed = _cli(config_file, out, fault)
    assert crashed.returncode != 0
    finished_before = RunDirectory(out).finished_jobs()
    resumed = _cli(config_file, out)
    assert resumed.returncode == 0, resumed.stderr
    # No finished job ran again...
    for job_id, entry in finished_before.items():
        assert RunDirectory(out).finished_jobs()[job_id] == entry
        assert f"finished {job_id} " not in resumed.stdout
    # ...and the numbers equal those of a run that was never interrupted.
    assert metrics_lines(out) == metrics_lines(reference)


def test_label_flip_is_for_teachers_only(tiny_dataset, tmp_path):
    from atso.running.context import RunContext
    from atso.strategies.plan import build_plan

    for label_flip, evaluation_flip in [(False, False), (True, False), (False, True)]:
        config = config_from_dict(tiny_config(
            tiny_dataset, teacher_student={"label_flip": label_flip}, evaluation={"flip": evaluation_flip}
        ))
        context = RunContext(config, RunDirectory(tmp_path / "run"), build_plan("atso", 1, 2), log=lambda line: None)
        model = {"m": torch.nn.Conv2d(3, 3, 1)}
        assert context.predictor(model, labeling=True).flip == (label_flip or evaluation_flip)
        assert context.predictor(model).flip == evaluation_flip


def test_class_balanced_labels_record_their_thresholds(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    run_atso(tiny_config(tiny_dataset, teacher_student={"strategy": "stso", "class_balanced_keep": 0.5}), out)
    run_dir = RunDirectory(out)
    thresholds = run_dir.finished_jobs()["g0/labels"]["outputs"]["class_thresholds"]
    assert set(thresholds) == {"1", "2"} and all(len(t) == 3 for t in thresholds.values())
    labels = np.concatenate([np.asarray(Image.open(p)).ravel() for p in run_dir.labels_dir("g0/labels").glob("*.png")])
    assert 0.5 <= (labels != 255).mean() < 0.9  # each class's most confident half, and ties
    g0 = read_json(run_dir.metrics_file("g0/eval"))
    # @R covers every pixel (filtered ones are misses); the kept pixels are scored apart, with their share.
    assert g0["reference_labeled_fraction"] == pytest.approx((labels != 255).mean(), abs=0.05)
    assert g0["reference_kept_miou"] > g0["reference_miou"]


def test_students_train_with_their_own_augmentation(tiny_dataset, tmp_path, monkeypatch):
    """M0 keeps train.scale_range and blur; students take the student_ ones (a noisier student)."""
    import atso.modalities.images as images_module

    built = []
    real = images_module.Augmentation

    def recording(*args, **kwargs):
        built.append(args[:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(images_module, "Augmentation", recording)
    train = {"scale_range": [1.0, 1.0], "blur_probability": 0.0, "student_scale_range": [0.5, 2.0], "student_blur_probability": 0.3}
    run_atso(tiny_config(tiny_dataset, train=train, teacher_student={"strategy": "stso", "generations": 2}), tmp_path / "run")
    assert built[0] == ((1.0, 1.0), True, 0.0)  # M0
    assert built[1:] and all(args == ((0.5, 2.0), True, 0.3) for args in built[1:])  # its students


def test_pretrained_m0_starts_from_another_runs_model(tiny_dataset, tmp_path):
    """model.pretrained: M0 fine-tunes the given model (at a vanishing lr it stays where it started)."""
    supervised = {"strategy": "supervised", "generations": 0}
    run_atso(tiny_config(tiny_dataset, teacher_student=supervised), tmp_path / "first")
    source = RunDirectory(tmp_path / "first").model_path("g0/m0")
    train = {"iterations": 2, "lr": 1e-12}
    run_atso(tiny_config(tiny_dataset, teacher_student=supervised, train=train, model={"pretrained": str(source)}), tmp_path / "tuned")
    run_atso(tiny_config(tiny_dataset, teacher_student=supervised, train=train), tmp_path / "scratch")
    weights = {name: torch.load(RunDirectory(tmp_path / name).model_path("g0/m0"), weights_only=True)["state_dict"]
               for name in ("first", "tuned", "scratch")}
    conv = next(k for k in weights["first"] if k.endswith("weight") and weights["first"][k].dim() == 4)
    assert torch.allclose(weights["tuned"][conv], weights["first"][conv], atol=1e-6)
    assert not torch.allclose(weights["scratch"][conv], weights["first"][conv], atol=1e-3)
    with pytest.raises(AtsoError, match="model.pretrained: .*not found"):
        run_atso(tiny_config(tiny_dataset, teacher_student=supervised, model={"pretrained": str(tmp_path / "none.pt")}), tmp_path / "bad")
