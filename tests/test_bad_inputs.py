"""A catalogue of bad inputs: each one stops ``atso`` with exit code 2 and one line naming the file or key.

Every case goes through the command line (``atso.cli.main``) and is refused before the run directory
is created, so nothing half-written is ever left behind. Errors that argparse itself reports (an
unknown ``--strategy``) also exit with 2, after its usage line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from atso.cli import main

from conftest import tiny_config

Setup = Callable[[Path, Path, dict], list[str]]  # (dataset root, tmp_path, raw config) -> extra arguments


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x89PNG not really an image")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _list_file(root: Path, tmp_path: Path, extra_line: str) -> Path:
    lines = [f"{root}/train/{p.name} {root}/trainannot/{p.name}" for p in sorted((root / "train").glob("*.png"))]
    path = tmp_path / "train.txt"
    path.write_text("\n".join(lines + [extra_line]) + "\n")
    return path


def missing_image(root, tmp_path, config):
    config["data"]["train"] = {"list": str(_list_file(root, tmp_path, f"{root}/train/gone.png {root}/trainannot/train_000.png"))}
    return []


def corrupt_image(root, tmp_path, config):
    _garbage(root / "train" / "train_000.png")
    return []


def truncated_image(root, tmp_path, config):
    _truncate(root / "val" / "val_002.png")
    return []


def missing_mask(root, tmp_path, config):
    (root / "trainannot" / "train_005.png").unlink()
    return []


def corrupt_mask(root, tmp_path, config):
    _garbage(root / "trainannot" / "train_004.png")
    return []


def mask_size_mismatch(root, tmp_path, config):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "trainannot" / "train_003.png")
    return []


def out_of_range_label(root, tmp_path, config):
    mask = np.array(Image.open(root / "valannot" / "val_001.png"))
    mask[2, 2] = 7
    Image.fromarray(mask).save(root / "valannot" / "val_001.png")
    return []


def colour_mask_for_index_masks(root, tmp_path, config):
    Image.new("RGB", (40, 32)).save(root / "trainannot" / "train_006.png")
    return []


def labeled_count_zero(root, tmp_path, config):
    config["data"]["labeled_count"] = 0
    return []


def labeled_list_empty(root, tmp_path, config):
    (tmp_path / "labeled.txt").write_text("# nobody\n")
    del config["data"]["labeled_count"]
    config["data"]["labeled_list"] = str(tmp_path / "labeled.txt")
    return []


def labeled_list_unknown_sample(root, tmp_path, config):
    (tmp_path / "labeled.txt").write_text(f"{root}/train/elsewhere_001.png\n")
    del config["data"]["labeled_count"]
    config["data"]["labeled_list"] = str(tmp_path / "labeled.txt")
    return []


def labeled_count_too_large(root, tmp_path, config):
    config["data"]["labeled_count"] = 13
    return []


def empty_reference_set(root, tmp_path, config):
    config["data"]["labeled_count"] = 12  # every training sample labeled, and strategy atso
    return []


def empty_test_set(root, tmp_path, config):
    (tmp_path / "empty").mkdir()
    config["data"]["test"] = {"images": str(tmp_path / "empty"), "masks": str(root / "valannot")}
    return []


def duplicate_stem(root, tmp_path, config):
    Image.open(root / "train" / "train_000.png").convert("RGB").save(root / "train" / "train_000.jpg")
    return []


def same_id_in_train_and_test(root, tmp_path, config):
    shutil.copy(root / "val" / "val_000.png", root / "train" / "val_000.png")
    shutil.copy(root / "valannot" / "val_000.png", root / "trainannot" / "val_000.png")
    return []


def unlabeled_is_the_test_set(root, tmp_path, config):
    config["data"]["unlabeled"] = [{"images": str(root / "val")}]
    return []


def unlabeled_overlaps_train(root, tmp_path, config):
    config["data"]["unlabeled"] = [{"images": str(root / "train")}]
    return []


def volume_as_tiff_stack(root, tmp_path, config):
    (root / "train" / "train_002.png").unlink()
    frames = [Image.new("RGB", (40, 32), (i * 40, 0, 0)) for i in range(3)]
    frames[0].save(root / "train" / "train_002.tif", save_all=True, append_images=frames[1:])
    return []


def array_file_as_image(root, tmp_path, config):
    np.save(root / "train" / "volume.npy", np.zeros((4, 32, 40), np.uint8))
    config["data"]["train"] = {"list": str(_list_file(root, tmp_path, f"{root}/train/volume.npy {root}/trainannot/train_000.png"))}
    return []


def unknown_key(root, tmp_path, config):
    config["train"]["learning_rate"] = 0.1
    return []


def wrong_type(root, tmp_path, config):
    config["train"]["iterations"] = "many"
    return []


def negative_learning_rate(root, tmp_path, config):
    config["train"]["lr"] = -0.1
    return []


def more_folds_than_reference_samples(root, tmp_path, config):
    config["teacher_student"]["folds"] = 9  # 12 training samples, 4 labeled: 8 reference samples
    return []


def one_fold(root, tmp_path, config):
    config["teacher_student"]["folds"] = 1
    return []


def input_size_too_small(root, tmp_path, config):
    config["data"]["input_size"] = [8, 8]
    return []


def unknown_model(root, tmp_path, config):
    config["model"] = {"name": "unet9000"}
    return []


def unknown_model_option(root, tmp_path, config):
    config["model"]["options"]["width"] = 3
    return []


def bad_model_option_value(root, tmp_path, config):
    config["model"]["options"]["base_channels"] = 0
    return []


def missing_description(root, tmp_path, config):
    config["data"]["description"] = str(root / "nowhere.yaml")
    return []


def unknown_strategy_override(root, tmp_path, config):
    return ["--set", "teacher_student.strategy=co-training"]


def override_without_value(root, tmp_path, config):
    return ["--set", "train.iterations"]


def missing_image_folder(root, tmp_path, config):
    config["data"]["train"] = {"images": str(root / "no_such_folder"), "masks": str(root / "trainannot")}
    return []


# (setup, words the error line must hold: the file or key, and the problem)
CASES: list[tuple[Setup, tuple[str, ...]]] = [
    (missing_image, ("gone.png", "not found")),
    (corrupt_image, ("train_000.png", "cannot read image")),
    (truncated_image, ("val_002.png", "cannot read image")),
    (missing_mask, ("train_005.png", "no mask")),
    (corrupt_mask, ("train_004.png", "cannot read mask")),
    (mask_size_mismatch, ("train_003.png", "masks must match")),
    (out_of_range_label, ("val_001.png", "7", "remap")),
    (colour_mask_for_index_masks, ("train_006.png", "mode RGB")),
    (labeled_count_zero, ("data.labeled_count", "greater than or equal to 1")),
    (labeled_list_empty, ("labeled.txt", "labeled set is empty", "data.labeled_count")),
    (labeled_list_unknown_sample, ("labeled.txt", "elsewhere_001")),
    (labeled_count_too_large, ("data.labeled_count", "13", "12 training samples")),
    (empty_reference_set, ("reference set is empty", "data.labeled_count")),
    (empty_test_set, ("empty", "no images found")),
    (duplicate_stem, ("train_000", "duplicate sample id")),
    (same_id_in_train_and_test, ("val_000", "test set")),
    (unlabeled_is_the_test_set, ("val_000", "reference and the test set", "data.unlabeled")),
    (unlabeled_overlaps_train, ("train_0", "data.unlabeled")),
    (volume_as_tiff_stack, ("train_002.tif", "3 frames")),
    (array_file_as_image, ("volume.npy", "array or volume")),
    (unknown_key, ("train.learning_rate", "allowed keys")),
    (wrong_type, ("train.iterations", "integer")),
    (negative_learning_rate, ("train.lr", "greater than 0")),
    (more_folds_than_reference_samples, ("teacher_student.folds", "9 folds", "there are 8")),
    (one_fold, ("teacher_student.folds", "greater than or equal to 2")),
    (input_size_too_small, ("data.input_size", "16")),
    (unknown_model, ("unet9000", "small_unet")),
    (unknown_model_option, ("width", "base_channels")),
    (bad_model_option_value, ("base_channels=0", "positive integer")),
    (missing_description, ("nowhere.yaml", "description not found")),
    (unknown_strategy_override, ("teacher_student.strategy", "atso")),
    (override_without_value, ("train.iterations", "key=value")),
    (missing_image_folder, ("no_such_folder", "not found")),
]


def expect_refusal(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("atso: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("setup, needles", CASES, ids=[setup.__name__ for setup, _ in CASES])
def test_bad_input_is_refused_before_the_run_directory_exists(tiny_dataset, tmp_path, capsys, setup, needles):
    config = tiny_config(tiny_dataset)
    extra = setup(tiny_dataset, tmp_path, config)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    expect_refusal(capsys, ["run", str(config_file), "--out", str(out), "--quiet", *extra], *needles)
    assert not out.exists()


def test_missing_config_file(tmp_path, capsys):
    expect_refusal(capsys, ["run", str(tmp_path / "absent.yaml"), "--out", str(tmp_path / "run")], "absent.yaml", "not found")
    assert not (tmp_path / "run").exists()


def test_bad_yaml(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("data: {train: [unclosed\n")
    expect_refusal(capsys, ["run", str(tmp_path / "broken.yaml"), "--out", str(tmp_path / "run")], "broken.yaml", "YAML")
    assert not (tmp_path / "run").exists()


def test_output_path_is_a_file(tiny_config_file, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    expect_refusal(capsys, ["run", str(tiny_config_file), "--out", str(tmp_path / "taken")], "taken", "run directory")
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_run_directory_made_by_another_config(tiny_dataset, tmp_path, capsys):
    from atso.config import config_from_dict
    from atso.running.run_dir import RunDirectory

    out = tmp_path / "run"
    RunDirectory(out).prepare(config_from_dict(tiny_config(tiny_dataset)))
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    config_file = tmp_path / "changed.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tiny_dataset, train={"lr": 0.01})))
    expect_refusal(capsys, ["run", str(config_file), "--out", str(out)], "config.yaml", "train.lr", "--force")
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_unknown_strategy_on_the_command_line_is_an_argparse_error(tiny_config_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(tiny_config_file), "--strategy", "co-training"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage:") and "invalid choice: 'co-training'" in err[-1]


def _assert_no_nan_checkpoint(job_dir: Path) -> None:
    assert not (job_dir / "model.pt").exists()
    if (job_dir / "state.pt").exists():
        state = torch.load(job_dir / "state.pt", weights_only=True)
        assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())


def test_absurd_learning_rate_stops_the_job(tiny_dataset, tmp_path, capsys):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tiny_dataset, train={"lr": 1e6})))
    out = tmp_path / "run"
    expect_refusal(capsys, ["run", str(config_file), "--out", str(out), "--quiet"], "g0/m0", "iteration", "train.lr")
    _assert_no_nan_checkpoint(out / "jobs" / "g0" / "m0")
    assert json.loads((out / "manifest.json").read_text())["jobs"] == {}


def test_nan_loss_names_the_job_and_its_first_bad_iteration(tiny_dataset, tmp_path, capsys, monkeypatch):
    import atso.training.trainer as trainer

    real = trainer.cross_entropy
    calls = {"n": 0}

    def nan_from_the_fifth_iteration(ignore_index):
        loss = real(ignore_index)

        def patched(logits, target):
            calls["n"] += 1
            value = loss(logits, target)
            return value * float("nan") if calls["n"] >= 5 else value

        return patched

    monkeypatch.setattr(trainer, "cross_entropy", nan_from_the_fifth_iteration)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tiny_dataset)))  # checkpoint_every 3, log_every 10
    out = tmp_path / "run"
    expect_refusal(capsys, ["run", str(config_file), "--out", str(out), "--quiet"], "g0/m0: loss became nan at iteration 5")
    job_dir = out / "jobs" / "g0" / "m0"
    _assert_no_nan_checkpoint(job_dir)
    assert torch.load(job_dir / "state.pt", weights_only=True)["iteration"] == 3  # the check ran before saving 6
