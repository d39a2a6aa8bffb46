"""teacher_student.reliability (ST++) in a run: snapshots kept, samples scored, the stable share trained first."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest
import torch

from atso import api
from atso.checkpoints import load_model
from atso.config import config_from_dict
from atso.data.description import load_description
from atso.data.images import read_label_map, read_mask
from atso.data.samples import read_list_file
from atso.evaluation.metrics import SegmentationScores
from atso.inference.reliability import most_reliable
from atso.errors import AtsoError
from atso.running.run_dir import RunDirectory
from atso.strategies.plan import M0

from conftest import run_until_killed, tiny_config, tiny_volume_config

RELIABILITY = {"reliability": {"enabled": True, "snapshots": 2, "share": 0.5, "first_iterations": 0.5}}


def _config(tiny_dataset, **teacher_student) -> dict:
    return tiny_config(tiny_dataset, teacher_student={"strategy": "stso", "generations": 1, **RELIABILITY, **teacher_student})


def _run(config: dict, out: Path, **options) -> dict:
    return api.run(config_from_dict(config), out, log=lambda line: None, report=False, **options)


def test_models_keep_snapshots_and_labelings_score_every_sample(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    _run(_config(tiny_dataset), out)
    run_dir = RunDirectory(out)
    final = torch.load(run_dir.model_path(M0), weights_only=True)["state_dict"]
    for k in (1, 2):
        snapshot, _ = load_model(run_dir.snapshot_path(M0, k))
        assert any(not torch.equal(value, final[key]) for key, value in snapshot.state_dict().items())
    assert not list(out.rglob("weights-*.pt"))  # the parts' raw snapshots are gone once the model files are written
    scores = json.loads((run_dir.labels_dir("g0/labels") / "reliability.json").read_text())
    reference = [line.split()[0] for k in (1, 2) for line in (run_dir.splits / f"reference_fold_{k}.txt").read_text().splitlines()]
    assert len(scores) == len(reference) and all(0.0 <= s <= 1.0 for s in scores.values())
    summary = run_dir.finished_jobs()["g0/labels"]["outputs"]["reliability"]
    assert summary["min"] == pytest.approx(min(scores.values()), abs=1e-4)
    # @R of the share trained on first, and of the rest, each over its own samples.
    g0 = json.loads(run_dir.metrics_file("g0/eval").read_text())
    description = load_description(tiny_dataset / "shapes.yaml")
    folds = [read_list_file(run_dir.splits / f"reference_fold_{k}.txt") for k in (1, 2)]
    chosen = {i for fold in folds for i in most_reliable([s.id for s in fold], scores, 0.5)}
    for name, wanted in (("reliable", True), ("unreliable", False)):
        part = SegmentationScores(description.classes, 255)
        for sample in (s for fold in folds for s in fold if (s.id in chosen) == wanted):
            labels = read_label_map(run_dir.labels_dir("g0/labels") / f"{sample.id}.png", 3)
            part.add_case(labels, read_mask(sample.mask, description), unlabeled=255)
        assert g0[f"reference_{name}_miou"] == pytest.approx(part.summary()["miou"])


def test_students_train_on_each_folds_most_stable_share_first(tiny_dataset, tmp_path, monkeypatch):
    train_stage = importlib.import_module("atso.running.stages.train")  # the package exports a function of that name

    firsts = []
    real = train_stage.StagedData

    def recording(first, switch_at):
        firsts.append(([pair.sample_id for pair in first.pairs if pair.target_is_pseudo], switch_at))
        return real(first, switch_at)

    monkeypatch.setattr(train_stage, "StagedData", recording)
    out = tmp_path / "run"
    _run(_config(tiny_dataset), out)
    run_dir = RunDirectory(out)
    scores = json.loads((run_dir.labels_dir("g0/labels") / "reliability.json").read_text())
    (chosen, switch_at), = firsts  # M0 trains on S alone: only the student stages its data
    assert switch_at == 3  # half of train.student_iterations (6)
    for k in (1, 2):
        fold = [Path(line.split()[0]).stem for line in (run_dir.splits / f"reference_fold_{k}.txt").read_text().splitlines()]
        mine = [sample for sample in chosen if sample in fold]
        assert len(mine) == math.ceil(0.5 * len(fold))
        assert min(scores[s] for s in mine) >= max(scores[s] for s in fold if s not in mine)
    record = run_dir.finished_jobs()["stso/g1/student"]["outputs"]["reliable_first"]
    assert record == {"pairs": len(chosen), "of": len(scores), "iterations": 3}


def test_a_run_killed_after_a_snapshot_resumes_to_the_same_numbers(tiny_dataset, tmp_path):
    config = config_from_dict(_config(tiny_dataset))
    reference = tmp_path / "straight"
    _run(_config(tiny_dataset), reference)
    out = tmp_path / "killed"
    run_until_killed(config, out, "train:g0/m0:7")  # resumes from the checkpoint at 6, past M0's first snapshot (4 of 12)
    _run(_config(tiny_dataset), out)
    lines = lambda path: (path / "metrics.jsonl").read_text()  # noqa: E731
    assert lines(out) == lines(reference)
    for k in (1, 2):
        assert RunDirectory(out).snapshot_path(M0, k).read_bytes() == RunDirectory(reference).snapshot_path(M0, k).read_bytes()


@pytest.mark.parametrize("source, message", [
    ("trained without them", r"--m0 .*m0: teacher_student.reliability needs 2 earlier checkpoints of M0, and that M0 kept none"),
    ("one deleted since", r"--m0 .*m0: .*snapshot-2\.pt"),
])
def test_an_m0_without_its_snapshots_is_refused_before_anything_is_written(tiny_dataset, tmp_path, source, message):
    m0 = tmp_path / "m0"
    if source == "trained without them":
        _run(tiny_config(tiny_dataset, teacher_student={"strategy": "stso", "generations": 1}), m0, m0_only=True)
    else:
        _run(_config(tiny_dataset), m0, m0_only=True)
        RunDirectory(m0).snapshot_path(M0, 2).unlink()
    with pytest.raises(AtsoError, match=message):
        _run(_config(tiny_dataset), tmp_path / "run", m0=m0)
    assert not (tmp_path / "run").exists()


def test_a_corrupt_snapshot_of_a_finished_job_stops_a_resume(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    _run(_config(tiny_dataset), out, m0_only=True)
    RunDirectory(out).snapshot_path(M0, 1).write_bytes(b"not a model")
    with pytest.raises(AtsoError, match=r"snapshot-1\.pt.*job g0/m0 is recorded finished: restore its snapshot-1\.pt"):
        _run(_config(tiny_dataset), out, m0_only=True)


def test_only_models_that_label_keep_snapshots(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    _run(_config(tiny_dataset, strategy="atso"), out)
    run_dir = RunDirectory(out)
    assert run_dir.snapshot_path("atso/g1/student-1", 2).is_file()  # it labels a fold for the final model
    assert not list(run_dir.job_dir("atso/final/model").glob("snapshot-*"))  # it labels nothing
    extra = torch.load(run_dir.snapshot_path(M0, 2), weights_only=True)["extra"]
    assert (extra["snapshot"], extra["iteration"]) == (2, 8)  # 2/3 of M0's 12 iterations: told apart from model.pt


def test_snapshots_need_schedules_longer_than_their_count(tiny_dataset):
    with pytest.raises(AtsoError, match=r"^config: teacher_student.reliability keeps 2 earlier checkpoints .*\(the shortest trains 2\)"):
        config_from_dict(tiny_config(tiny_dataset, train={"student_iterations": 2}, teacher_student=RELIABILITY))


def test_an_m0_with_snapshots_brings_them_along(tiny_dataset, tmp_path):
    source = tmp_path / "m0"
    _run(_config(tiny_dataset), source, m0_only=True)
    _run(_config(tiny_dataset, class_balanced_keep=0.5), tmp_path / "run", m0=source)
    for k in (1, 2):
        copied = RunDirectory(tmp_path / "run").snapshot_path(M0, k)
        assert copied.read_bytes() == RunDirectory(source).snapshot_path(M0, k).read_bytes()


def test_volume_models_keep_snapshots_of_every_view(tiny_volumes, tmp_path):
    config = tiny_volume_config(tiny_volumes, teacher_student={"strategy": "self-learning", "generations": 1, **RELIABILITY})
    out = tmp_path / "run"
    _run(config, out)
    run_dir = RunDirectory(out)
    model, _ = load_model(run_dir.snapshot_path(M0, 1))
    final, _ = load_model(run_dir.model_path(M0))
    for part in model.networks:  # every view's network at its own snapshot, not the final one
        early, late = model.networks[part].state_dict(), final.networks[part].state_dict()
        assert any(not torch.equal(early[key], late[key]) for key in early), part
    scores = json.loads((run_dir.labels_dir("g0/labels") / "reliability.json").read_text())
    assert scores and all(0.0 <= s <= 1.0 for s in scores.values())
    assert run_dir.finished_jobs()["self-learning/g1/student"]["outputs"]["reliable_first"]["pairs"] >= 1
