"""The command line: help, train/evaluate/predict round trip, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from atso.cli import main

from conftest import tiny_config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "run", "compare", "plan", "demo"):
        assert command in out


def test_train_evaluate_predict_round_trip(tiny_dataset, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_config(tiny_dataset))
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 0  # stderr is no terminal: quiet
    checkpoint = tmp_path / "run" / "jobs" / "g0" / "m0" / "model.pt"
    assert checkpoint.is_file()
    captured = capsys.readouterr()
    trained = captured.out
    assert "M0 on the test set (4 images)" in trained and "mIoU" in trained and "@R" not in trained
    assert "finished g0/test (evaluate)" in trained and "test mIoU " in trained and " %" in trained
    assert "\r" not in captured.err and "it/s" not in captured.err  # no progress bars in a log
    assert f"--m0 {tmp_path / 'run'}" in trained
    assert not (tmp_path / "run" / "jobs" / "g0" / "labels").exists()
    report = tmp_path / "eval.json"
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(tiny_dataset), "--split", "val",
                 "--output", str(report)])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("background", "square", "bar", "mIoU"):
        assert name in printed
    scores = json.loads(report.read_text())
    assert list(scores["per_class_iou"]) == ["background", "square", "bar"]  # class order, not sorted
    assert scores["num_cases"] == 4 and scores["units"].startswith("fraction")
    again = ["evaluate", "--checkpoint", str(checkpoint), "--data-root", str(tiny_dataset), "--output", str(report)]
    _expect_error(capsys, again, "eval.json: exists", "--force")
    assert json.loads(report.read_text()) == scores
    assert main(again + ["--force", "--quiet"]) == 0
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(tiny_dataset / "val"),
                 "--output", str(out), "--overlay", "--quiet"]) == 0
    assert f"wrote 4 label maps to {out} and 4 overlays to {out / 'overlays'}" in capsys.readouterr().out
    for image in sorted((tiny_dataset / "val").glob("*.png")):
        written = Image.open(out / image.name)
        assert written.size == Image.open(image).size and written.mode == "P"
        assert np.array(written).max() < 3
        assert Image.open(out / "overlays" / image.name).mode == "RGB"
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in (tiny_dataset / "val").glob("*.png"))


def test_plan_prints_without_running(tiny_config_file, tmp_path, capsys):
    assert main(["plan", str(tiny_config_file), "--strategy", "atso", "--generations", "2"]) == 0
    out = capsys.readouterr().out
    assert "atso/g2/labels" in out and "R1 <- atso/g2/student-2" in out


def _expect_error(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _not_complete(out: Path) -> None:
    assert not (out / "manifest.json").exists() or not json.loads((out / "manifest.json").read_text()).get("jobs")


def test_labeled_image_without_mask(tiny_dataset, tmp_path, capsys):
    (tiny_dataset / "trainannot" / "train_005.png").unlink()
    config = write_config(tmp_path / "c.yaml", tiny_config(tiny_dataset))
    _expect_error(capsys, ["train", str(config), "--out", str(tmp_path / "run")], "train_005.png", "mask")
    _not_complete(tmp_path / "run")


def test_mask_size_differs_from_image(tiny_dataset, tmp_path, capsys):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tiny_dataset / "trainannot" / "train_003.png")
    config = write_config(tmp_path / "c.yaml", tiny_config(tiny_dataset))
    _expect_error(capsys, ["train", str(config), "--out", str(tmp_path / "run")], "train_003.png", "size")
    _not_complete(tmp_path / "run")


def test_label_value_out_of_range(tiny_dataset, tmp_path, capsys):
    mask = np.array(Image.open(tiny_dataset / "valannot" / "val_001.png"))
    mask[2, 2] = 7
    Image.fromarray(mask).save(tiny_dataset / "valannot" / "val_001.png")
    config = write_config(tmp_path / "c.yaml", tiny_config(tiny_dataset))
    _expect_error(capsys, ["train", str(config), "--out", str(tmp_path / "run")], "val_001.png", "7", "remap")
    _not_complete(tmp_path / "run")


def test_unreadable_image(tiny_dataset, tmp_path, capsys):
    (tiny_dataset / "train" / "train_000.png").write_bytes(b"not a png at all")
    config = write_config(tmp_path / "c.yaml", tiny_config(tiny_dataset))
    _expect_error(capsys, ["train", str(config), "--out", str(tmp_path / "run")], "train_000.png", "cannot read")
    _not_complete(tmp_path / "run")


def test_unknown_config_key(tiny_dataset, tmp_path, capsys):
    raw = tiny_config(tiny_dataset)
    raw["train"]["learning_rate"] = 0.1
    config = write_config(tmp_path / "c.yaml", raw)
    _expect_error(capsys, ["train", str(config), "--out", str(tmp_path / "run")], "train.learning_rate", "allowed")
    assert not (tmp_path / "run").exists()


def test_bad_override_value(tiny_config_file, tmp_path, capsys):
    _expect_error(capsys, ["run", str(tiny_config_file), "--set", "teacher_student.folds=1", "--out",
                           str(tmp_path / "run")], "teacher_student.folds")


def test_m0_of_no_run_directory(tiny_config_file, tmp_path, capsys):
    _expect_error(capsys, ["compare", str(tiny_config_file), "--m0", str(tmp_path / "none"), "--out",
                           str(tmp_path / "run")], "--m0", "none", "atso train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("split, needles", [("test", ("--split test", "no labels")), ("val", ("--split val", "training and test"))])
def test_evaluate_honours_the_split_of_a_decathlon_task(tmp_path, capsys, split, needles):
    from conftest import write_volume_dataset

    root = write_volume_dataset(tmp_path / "task", 2)
    _expect_error(capsys, ["evaluate", "--checkpoint", str(tmp_path / "m.pt"), "--data-root", str(root), "--split", split],
                  *needles)


def test_missing_checkpoint(tiny_dataset, tmp_path, capsys):
    _expect_error(capsys, ["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--data-root", str(tiny_dataset)],
                  "nope.pt")


def test_job_runs_one_job_and_refuses_unready_inputs(tiny_dataset, tmp_path, capsys):
    from atso.config import config_from_dict
    from atso.running.run_dir import RunDirectory

    out = tmp_path / "run"
    RunDirectory(out).prepare(config_from_dict(tiny_config(tiny_dataset)))
    _expect_error(capsys, ["job", str(out), "atso/g1/student-1"], "atso/g1/student-1", "g0/labels")
    _expect_error(capsys, ["job", str(out), "no/such/job"], "no/such/job", "known jobs")
    assert main(["job", str(out), "g0/m0"]) == 0
    assert list(RunDirectory(out).finished_jobs()) == ["g0/m0"]
