"""The engine on volumes: every strategy, fused NIfTI pseudo-labels, DSC records, resume, predict and bad volumes."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from atso import api
from atso.checkpoints import load_model
from atso.cli import main
from atso.config import config_from_dict
from atso.models.views import ViewNetworks
from atso.running.context import RunContext
from atso.running.run_dir import RunDirectory
from atso.storage import read_json
from atso.strategies.plan import make_plan

from conftest import VOLUME_AFFINE, VOLUME_SHAPE, run_until_killed, tiny_volume_config, write_volume_dataset


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def volume_run(tmp_path_factory):
    """All four strategies, one generation, on 10 generated volumes (2 labeled, 6 reference, 2 test)."""
    root = write_volume_dataset(tmp_path_factory.mktemp("data") / "blobs", 10)
    config = config_from_dict(tiny_volume_config(root))
    out = tmp_path_factory.mktemp("run") / "run"
    result = api.run(config, out, compare=True, log=quiet, report=True)
    return root, config, out, result


def metrics_lines(out):
    return (out / "metrics.jsonl").read_text().splitlines()


def test_compare_on_volumes_records_dice_for_every_strategy(volume_run):
    _, _, out, result = volume_run
    records = {record["job"]: record for record in result["records"]}
    assert set(records) == {
        "g0/eval", "self-learning/g1/eval", "stso/g1/eval", "atso/g1/eval", "atso/final/eval",
    }
    for record in records.values():
        assert record["metric"] == "dice"
        assert 0.0 <= record["test_dice"] <= 1.0 and 0.0 <= record["test_global_dice"] <= 1.0
        for group, summary in record["test"].items():  # per volume and global, for each model
            assert [case["case_id"] for case in summary["cases"]] == ["vol_008", "vol_009"], group
    assert records["g0/eval"]["agreement_with_m0"]["g0/m0"] == pytest.approx(1.0)
    assert set(records["atso/g1/eval"]["test"]) == {"atso/g1/student-1", "atso/g1/student-2", "ensemble"}
    for job in ("g0/eval", "self-learning/g1/eval", "atso/g1/eval"):
        assert 0.0 <= records[job]["reference_dice"] <= 1.0
        assert len(records[job]["reference"]["cases"]) == 6
    assert "changed_fraction" in records["stso/g1/eval"]
    summary = (out / "report" / "summary.md").read_text()
    assert "foreground DSC" in summary and "Per-volume DSC" in summary
    assert (out / "report" / "cases" / "vol_008-m0.png").is_file() or (out / "report" / "cases" / "vol_009-m0.png").is_file()
    assert "G1" in result["table"] and "@R" in result["table"]


def test_pseudo_labels_are_fused_nifti_on_the_scans_grid(volume_run):
    root, _, out, _ = volume_run
    labels = sorted((out / "jobs" / "g0" / "labels" / "labels").iterdir())
    assert [p.name for p in labels] == sorted(
        f"{line.split()[0].rsplit('/', 1)[1]}" for line in (out / "splits" / "reference_fold_1.txt").read_text().splitlines()
        + (out / "splits" / "reference_fold_2.txt").read_text().splitlines()
    )
    for path in labels:
        written = nib.load(path)
        scan = nib.load(root / "imagesTr" / path.name)
        assert written.shape == scan.shape == VOLUME_SHAPE
        np.testing.assert_array_equal(written.affine, scan.affine)
        np.testing.assert_allclose(written.affine, VOLUME_AFFINE, atol=1e-6)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1}


def test_m0_test_predictions_are_kept_once_on_the_scans_grid(volume_run):
    _, config, out, _ = volume_run
    folder = RunDirectory(out).job_dir("g0/m0") / "test_labels"
    assert sorted(path.name for path in folder.iterdir()) == ["complete.json", "vol_008.nii.gz", "vol_009.nii.gz"]
    context = RunContext(config, RunDirectory(out), make_plan(config, compare=True), log=quiet)
    predictor = context.predictor(context.load_models(["g0/m0"]))
    for sample, predictions in predictor.predict(context.split.test, {"m0": ["g0/m0"]}):
        kept = nib.load(folder / f"{sample.id}.nii.gz")
        assert np.array_equal(np.asarray(kept.dataobj), predictions["m0"].labels)  # what predicting again gives
        assert np.allclose(kept.affine, nib.load(sample.image).affine)


def test_a_volume_model_is_its_view_networks(volume_run):
    _, config, out, _ = volume_run
    model, info = load_model(RunDirectory(out).model_path("atso/final/model"))
    assert isinstance(model, ViewNetworks)
    assert model.keys() == ["axial", "coronal", "sagittal"]
    assert info.extra["volume"]["context"] == 1
    first = model.network("axial").state_dict()
    second = model.network("coronal").state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first)  # each view trained its own network


def test_students_never_see_reference_truth(volume_run, tmp_path):
    """Scrambling the reference volumes' labels changes @R only: models and @E stay bit-identical."""
    root, config, out, _ = volume_run
    scrambled = tmp_path / "blobs"
    write_volume_dataset(scrambled, 10)
    labeled = {line.split()[0].rsplit("/", 1)[1] for line in (out / "splits" / "labeled.txt").read_text().splitlines()}
    rng = np.random.default_rng(1)
    for path in (scrambled / "labelsTr").iterdir():
        if path.name not in labeled and path.name[:7] not in ("vol_008", "vol_009"):
            nib.save(nib.Nifti1Image(rng.integers(0, 2, VOLUME_SHAPE).astype(np.uint8), VOLUME_AFFINE), path)
    other = config_from_dict(tiny_volume_config(scrambled, teacher_student={"strategy": "stso"}))
    run = api.run(other, tmp_path / "run", log=quiet, report=False)
    original = {r["job"]: r for r in json.loads("[" + ",".join(metrics_lines(out)) + "]")}
    for record in run["records"]:
        assert record["test"] == original[record["job"]]["test"]
    assert run["records"][0]["reference_dice"] != original["g0/eval"]["reference_dice"]  # the truth did change
    for job in ("g0/m0", "stso/g1/student"):
        mine = torch.load(RunDirectory(tmp_path / "run").model_path(job), weights_only=True)["state_dict"]
        theirs = torch.load(RunDirectory(out).model_path(job), weights_only=True)["state_dict"]
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), job


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize(
    "point",
    ["train:g0/m0:coronal:6", "write:network-sagittal.pt", "label:atso/g1/labels:2", "write:vol_001.nii.gz#2"],
)
def test_killed_volume_run_resumes_to_the_same_results(volume_run, tmp_path, point):
    _, config, reference, _ = volume_run
    out = tmp_path / "run"
    run_until_killed(config, out, point, compare=True)
    api.run(config, out, compare=True, log=quiet, report=False)
    assert metrics_lines(out) == metrics_lines(reference)
    assert not list(out.rglob("network-*.pt")) and not list(out.rglob("state-*.pt"))


def test_predict_and_evaluate_volumes_from_the_cli(volume_run, tmp_path, capsys):
    root, _, out, _ = volume_run
    model = RunDirectory(out).model_path("atso/final/model")
    assert main(["predict", "--checkpoint", str(model), "--input", str(root / "imagesTr"), "--output", str(tmp_path / "pred")]) == 0
    written = nib.load(tmp_path / "pred" / "vol_003.nii.gz")
    assert written.shape == VOLUME_SHAPE
    np.testing.assert_array_equal(written.affine, nib.load(root / "imagesTr" / "vol_003.nii.gz").affine)
    report = tmp_path / "scores.json"
    code = main(["evaluate", "--checkpoint", str(model), "--images", str(root / "imagesTr"),
                 "--masks", str(root / "labelsTr"), "--output", str(report)])
    assert code == 0
    summary = json.loads(report.read_text())
    assert len(summary["cases"]) == 10 and summary["global_dice"] is not None
    assert "global (all merged)" in capsys.readouterr().out


def _config_file(tmp_path, root):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_volume_config(root)))
    return path


@pytest.mark.parametrize("damage, message", [
    ("flat", "expected a 3D volume"),
    ("label_shape", "labels must lie on their image's voxel grid"),
    ("unreadable", "cannot read image volume"),
])
def test_bad_volumes_fail_before_training_with_one_line(tmp_path, capsys, damage, message):
    root = write_volume_dataset(tmp_path / "blobs", 10)
    target = root / "imagesTr" / "vol_004.nii.gz"
    if damage == "flat":
        nib.save(nib.Nifti1Image(np.zeros((22, 18), np.float32), VOLUME_AFFINE), target)
    elif damage == "label_shape":
        target = root / "labelsTr" / "vol_004.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((22, 18, 9), np.uint8), VOLUME_AFFINE), target)
    else:
        target.write_bytes(b"not a nifti file at all")
    out = tmp_path / "run"
    assert main(["run", str(_config_file(tmp_path, root)), "--out", str(out), "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and str(target) in error[0] and message in error[0]
    assert not out.exists()


def test_options_for_images_only_are_refused_for_volumes(tmp_path, capsys):
    root = write_volume_dataset(tmp_path / "blobs", 10)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_volume_config(root, teacher_student={"pseudo_labels": "super"})))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "teacher_student.pseudo_labels: 'super' is for 2D images" in capsys.readouterr().err


def test_class_balanced_selection_on_fused_volumes(tmp_path):
    root = write_volume_dataset(tmp_path / "data", 10)
    out = tmp_path / "run"
    config = tiny_volume_config(root, teacher_student={"strategy": "stso", "generations": 1, "class_balanced_keep": 0.5})
    api.run(config_from_dict(config), out, log=quiet)
    run_dir = RunDirectory(out)
    assert set(run_dir.finished_jobs()["g0/labels"]["outputs"]["class_thresholds"]) == {"1", "2"}
    labels = np.concatenate([
        np.asarray(nib.load(path).dataobj).ravel() for path in run_dir.labels_dir("g0/labels").glob("*.nii.gz")
    ])
    assert 0.5 <= (labels != 255).mean() < 1.0  # each class's most confident half (and ties); the rest ignored
    g0 = read_json(run_dir.metrics_file("g0/eval"))
    assert 0 < g0["reference_labeled_fraction"] < 1  # @R over every voxel, the kept share beside it
    assert g0["reference_kept_dice"] >= g0["reference_dice"]
