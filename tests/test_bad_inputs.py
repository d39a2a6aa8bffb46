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


def _shapes_model(path: Path, classes: int = 3) -> Path:
    """A model file atso wrote, for the tiny dataset's network (or another class count)."""
    from atso.checkpoints import ModelInfo, save_model
    from atso.data.description import DatasetDescription
    from atso.models import build_model

    names = ["background", "square", "bar"] + [f"extra{i}" for i in range(classes - 3)]
    info = ModelInfo("small_unet", {"base_channels": 4, "depth": 2}, DatasetDescription(classes=names, remap={3: 255} if classes == 3 else {}), (32, 40))
    torch.manual_seed(0)
    return save_model(path, build_model("small_unet", classes, base_channels=4, depth=2), info)


def list_file_not_utf8(root, tmp_path, config):
    path = _list_file(root, tmp_path, "")
    path.write_bytes(path.read_bytes() + "# caf\u00e9\n".encode("latin-1"))
    config["data"]["train"] = {"list": str(path)}
    return []


def list_file_unquoted_spaces(root, tmp_path, config):
    shutil.copy(root / "train" / "train_000.png", tmp_path / "my image.png")
    config["data"]["train"] = {"list": str(_list_file(root, tmp_path, f"{tmp_path}/my image.png {root}/trainannot/train_000.png"))}
    return []


def list_file_unclosed_quote(root, tmp_path, config):
    config["data"]["train"] = {"list": str(_list_file(root, tmp_path, f'"{root}/train/train_000.png {root}/trainannot/train_000.png'))}
    return []


def dangling_symlink_image(root, tmp_path, config):
    (root / "train" / "train_012.png").symlink_to(root / "train" / "deleted.png")
    return []


def dangling_symlink_mask(root, tmp_path, config):
    (root / "trainannot" / "train_007.png").unlink()
    (root / "trainannot" / "train_007.png").symlink_to(root / "trainannot" / "deleted.png")
    return []


def device_that_is_not_one(root, tmp_path, config):
    config["runtime"]["device"] = "tpu"
    return []


def device_this_machine_lacks(root, tmp_path, config):
    config["runtime"]["device"] = "cuda:99"
    return []


def devices_list_this_machine_lacks(root, tmp_path, config):
    config["runtime"]["devices"] = ["cuda:98", "cuda:99"]
    return []


def infinite_learning_rate(root, tmp_path, config):
    config["train"]["lr"] = float("inf")
    return []


def infinite_weight_decay(root, tmp_path, config):
    config["train"]["weight_decay"] = float("inf")
    return []


def nan_momentum(root, tmp_path, config):
    config["train"]["momentum"] = float("nan")
    return []


def infinite_scale_range(root, tmp_path, config):
    return ["--set", "train.scale_range=[1.0,.inf]"]


def boolean_iterations(root, tmp_path, config):
    config["train"]["iterations"] = True
    return []


def boolean_learning_rate(root, tmp_path, config):
    return ["--set", "train.lr=true"]


def boolean_in_input_size(root, tmp_path, config):
    config["data"]["input_size"] = [True, 40]
    return []


def input_size_too_large(root, tmp_path, config):
    config["data"]["input_size"] = [100000, 100000]
    return []


def model_too_deep(root, tmp_path, config):
    config["model"]["options"]["depth"] = 99
    return []


def model_too_wide(root, tmp_path, config):
    config["model"]["options"] = {"base_channels": 1024, "depth": 6}
    return []


def monai_unet_too_many_levels(root, tmp_path, config):
    config["model"] = {"name": "monai_unet", "options": {"channels": [4] * 12, "strides": [2] * 11}}
    return []


def duplicate_class_names(root, tmp_path, config):
    description = yaml.safe_load((root / "shapes.yaml").read_text())
    description["classes"] = ["background", "square", "square"]
    (root / "shapes.yaml").write_text(yaml.safe_dump(description))
    return []


def description_duplicate_key(root, tmp_path, config):
    text = (root / "shapes.yaml").read_text()
    (root / "shapes.yaml").write_text(text + "classes: [background, square]\n")
    return []


def description_not_utf8(root, tmp_path, config):
    (root / "shapes.yaml").write_bytes((root / "shapes.yaml").read_bytes() + "# \u00e9\n".encode("latin-1"))
    return []


def pretrained_random_file(root, tmp_path, config):
    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    config["model"]["pretrained"] = str(tmp_path / "random.pt")
    return []


def pretrained_carrying_code(root, tmp_path, config):
    from conftest import write_code_carrying_file

    payload = torch.load(_shapes_model(tmp_path / "real.pt"), weights_only=True)
    path, _ = write_code_carrying_file(tmp_path / "evil.pt", tmp_path, payload)
    config["model"]["pretrained"] = str(path)
    return []


def pretrained_of_another_class_count(root, tmp_path, config):
    config["model"]["pretrained"] = str(_shapes_model(tmp_path / "eleven.pt", classes=11))
    return []


def truncated_reference_image(root, tmp_path, config):
    (tmp_path / "labeled.txt").write_text("".join(f"{root}/train/train_{i:03d}.png\n" for i in range(4)))
    del config["data"]["labeled_count"]
    config["data"]["labeled_list"] = str(tmp_path / "labeled.txt")
    _truncate(root / "train" / "train_010.png")  # a reference image: before, found only at labeling, after M0
    return []


def truncated_reference_jpeg(root, tmp_path, config):
    truncated_reference_image(root, tmp_path, config)
    shutil.copy(root / "train" / "train_009.png", tmp_path / "keep.png")
    Image.open(root / "train" / "train_011.png").convert("RGB").save(root / "train" / "train_011.jpg", quality=95)
    (root / "train" / "train_011.png").unlink()
    shutil.copy(tmp_path / "keep.png", root / "train" / "train_010.png")  # only the JPEG is damaged
    _truncate(root / "train" / "train_011.jpg")
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
    (list_file_not_utf8, ("train.txt", "not UTF-8", "save it as UTF-8")),
    (list_file_unquoted_spaces, ("train.txt:13", "3 paths", "quote paths with spaces", "tab")),
    (list_file_unclosed_quote, ("train.txt:13", "quotation", "tab")),
    (dangling_symlink_image, ("train_012.png", "symbolic link to a missing file")),
    (dangling_symlink_mask, ("train_007.png", "mask is a symbolic link to a missing file")),
    (device_that_is_not_one, ("runtime.device", "'tpu' is not a device")),
    (device_this_machine_lacks, ("runtime.device", "cuda:99", "asked for but")),
    (devices_list_this_machine_lacks, ("runtime.devices", "cuda:98", "asked for but")),
    (infinite_learning_rate, ("train.lr", "finite number")),
    (infinite_weight_decay, ("train.weight_decay", "finite number")),
    (nan_momentum, ("train.momentum", "finite number")),
    (infinite_scale_range, ("train.scale_range", "finite number")),
    (boolean_iterations, ("train.iterations", "true is a boolean, not a number")),
    (boolean_learning_rate, ("train.lr", "true is a boolean, not a number")),
    (boolean_in_input_size, ("data.input_size", "boolean")),
    (input_size_too_large, ("data.input_size", "too large", "4096")),
    (model_too_deep, ("depth=99", "at most 8")),
    (model_too_wide, ("base_channels=1024", "deepest level", "4096")),
    (monai_unet_too_many_levels, ("monai_unet", "channels", "2 to 9 levels")),
    (duplicate_class_names, ("shapes.yaml", "square", "more than once")),
    (description_duplicate_key, ("shapes.yaml", "duplicate key 'classes'", "give each key once")),
    (description_not_utf8, ("shapes.yaml", "not UTF-8")),
    (pretrained_random_file, ("model.pretrained", "random.pt", "cannot read checkpoint")),
    (pretrained_carrying_code, ("model.pretrained", "evil.pt", "refusing to load", "could run code")),
    (pretrained_of_another_class_count, ("model.pretrained", "eleven.pt", "does not fit")),
    (truncated_reference_image, ("train_010.png", "cannot read image")),
    (truncated_reference_jpeg, ("train_011.jpg", "cannot read image")),
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
    assert not (tmp_path / "code-ran.marker").exists()


# Config files that yaml.safe_dump cannot write: (name, turn the dumped config's text into the bad file, needles)
RAW_CONFIG_CASES: list[tuple[str, Callable[[str], bytes], tuple[str, ...]]] = [
    ("config_not_utf8", lambda text: (text + "# r\u00e9sum\u00e9\n").encode("latin-1"), ("config.yaml", "not UTF-8", "UTF-8")),
    ("duplicate_top_level_key", lambda text: (text + "train:\n  iterations: 5\n").encode(), ("config.yaml", "duplicate key 'train'")),
    ("duplicate_nested_key", lambda text: text.replace("  lr: 0.05\n", "  lr: 0.05\n  lr: 0.5\n").encode(), ("duplicate key 'lr'",)),
    ("yaml_inf_learning_rate", lambda text: text.replace("lr: 0.05", "lr: .inf").encode(), ("train.lr", "finite")),
    ("yaml_boolean_iterations", lambda text: text.replace("iterations: 12", "iterations: yes").encode(), ("train.iterations", "boolean")),
]


@pytest.mark.parametrize("name, damage, needles", RAW_CONFIG_CASES, ids=[case[0] for case in RAW_CONFIG_CASES])
def test_bad_config_file_is_refused_before_the_run_directory_exists(tiny_dataset, tmp_path, capsys, name, damage, needles):
    text = yaml.safe_dump(tiny_config(tiny_dataset), sort_keys=False)
    config_file = tmp_path / "config.yaml"
    config_file.write_bytes(damage(text))
    assert config_file.read_bytes() != text.encode(), "the damage changed nothing"
    out = tmp_path / "run"
    expect_refusal(capsys, ["run", str(config_file), "--out", str(out), "--quiet"], *needles)
    assert not out.exists()


def test_volume_label_off_its_scans_grid_is_refused(tiny_volumes, tmp_path, capsys):
    import nibabel as nib

    from conftest import VOLUME_AFFINE, tiny_volume_config

    label = tiny_volumes / "labelsTr" / "vol_003.nii.gz"
    shifted = VOLUME_AFFINE.copy()
    shifted[0, 3] += 4.0  # 4 mm off: same shape, another place in space
    nib.save(nib.Nifti1Image(np.asarray(nib.load(label).dataobj), shifted), label)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_volume_config(tiny_volumes)))
    out = tmp_path / "run"
    expect_refusal(capsys, ["run", str(config_file), "--out", str(out), "--quiet"],
                   "vol_003.nii.gz", "affine differs", "tolerance", "resample")
    assert not out.exists()


def test_a_folder_that_is_not_a_run_directory_is_refused_and_left_alone(tiny_config_file, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "deep").mkdir(parents=True)
    (out / "deep" / ".cache.xyz.tmp").write_text("someone else's")
    expect_refusal(capsys, ["run", str(tiny_config_file), "--out", str(out), "--quiet"],
                   "mine", "not an atso run directory", "--out")
    assert [p.relative_to(out) for p in sorted(out.rglob("*"))] == [Path("deep"), Path("deep/.cache.xyz.tmp")]


def _prepared_run(tiny_dataset, tmp_path) -> tuple[Path, Path]:
    from atso.config import load_config
    from atso.running.run_dir import RunDirectory

    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tiny_dataset)))
    out = tmp_path / "run"
    RunDirectory(out).prepare(load_config(config_file))
    return config_file, out


def test_a_state_file_carrying_code_in_the_run_directory_runs_nothing(tiny_dataset, tmp_path, capsys):
    from conftest import write_code_carrying_file

    config_file, out = _prepared_run(tiny_dataset, tmp_path)
    (out / "jobs" / "g0" / "m0").mkdir(parents=True)
    _, marker = write_code_carrying_file(out / "jobs" / "g0" / "m0" / "state.pt", tmp_path, {"iteration": 3})
    expect_refusal(capsys, ["run", str(config_file), "--out", str(out), "--quiet"], "state.pt", "refusing to load")
    assert not marker.exists()
    assert json.loads((out / "manifest.json").read_text())["jobs"] == {}


def test_a_corrupt_finished_model_stops_the_resume_before_any_work(tiny_dataset, tmp_path, capsys):
    from atso.running.run_dir import RunDirectory

    config_file, out = _prepared_run(tiny_dataset, tmp_path)
    model = _shapes_model(out / "jobs" / "g0" / "m0" / "model.pt")
    RunDirectory(out).mark_finished("g0/m0", {"model": "jobs/g0/m0/model.pt"}, 1.0)
    _truncate(model)
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    expect_refusal(capsys, ["run", str(config_file), "--out", str(out), "--quiet"],
                   "g0/m0/model.pt", "cannot read checkpoint", "recorded finished")
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


InferenceSetup = Callable[[Path, Path, Path], list[str]]  # (dataset root, tmp_path, model file) -> arguments


def predict_device_gpu(root, tmp_path, model):
    return ["predict", "--checkpoint", str(model), "--input", str(root / "val"), "--output", str(tmp_path / "out"), "--device", "gpu"]


def predict_device_missing(root, tmp_path, model):
    return ["predict", "--checkpoint", str(model), "--input", str(root / "val"), "--output", str(tmp_path / "out"), "--device", "cuda:99"]


def predict_batch_size_zero(root, tmp_path, model):
    return ["predict", "--checkpoint", str(model), "--input", str(root / "val"), "--output", str(tmp_path / "out"), "--batch-size", "0"]


def predict_checkpoint_carrying_code(root, tmp_path, model):
    from conftest import write_code_carrying_file

    path, _ = write_code_carrying_file(tmp_path / "evil.pt", tmp_path, torch.load(model, weights_only=True))
    return ["predict", "--checkpoint", str(path), "--input", str(root / "val"), "--output", str(tmp_path / "out")]


def predict_checkpoint_that_does_not_fit(root, tmp_path, model):
    payload = torch.load(model, weights_only=True)
    payload["state_dict"] = {k: v[:1] if v.dim() else v for k, v in payload["state_dict"].items()}
    torch.save(payload, tmp_path / "shrunk.pt")
    return ["predict", "--checkpoint", str(tmp_path / "shrunk.pt"), "--input", str(root / "val"), "--output", str(tmp_path / "out")]


def predict_truncated_image_among_good_ones(root, tmp_path, model):
    _truncate(root / "val" / "val_003.png")
    return ["predict", "--checkpoint", str(model), "--input", str(root / "val"), "--output", str(tmp_path / "out")]


def evaluate_input_size_one(root, tmp_path, model):
    return ["evaluate", "--checkpoint", str(model), "--data-root", str(root), "--split", "val",
            "--output", str(tmp_path / "out" / "e.json"), "--input-size", "1", "1"]


def evaluate_input_size_huge(root, tmp_path, model):
    return ["evaluate", "--checkpoint", str(model), "--data-root", str(root), "--split", "val",
            "--output", str(tmp_path / "out" / "e.json"), "--input-size", "100000", "100000"]


def evaluate_device_tpu(root, tmp_path, model):
    return ["evaluate", "--checkpoint", str(model), "--data-root", str(root), "--split", "val",
            "--output", str(tmp_path / "out" / "e.json"), "--device", "tpu"]


def evaluate_label_out_of_range_in_the_last_mask(root, tmp_path, model):
    mask = np.array(Image.open(root / "valannot" / "val_003.png"))
    mask[1, 1] = 9
    Image.fromarray(mask).save(root / "valannot" / "val_003.png")
    return ["evaluate", "--checkpoint", str(model), "--data-root", str(root), "--split", "val",
            "--output", str(tmp_path / "out" / "e.json")]


def evaluate_description_with_duplicate_classes(root, tmp_path, model):
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump({"classes": ["background", "bar", "bar"]}))
    return ["evaluate", "--checkpoint", str(model), "--data-root", str(root), "--split", "val",
            "--output", str(tmp_path / "out" / "e.json"), "--description", str(tmp_path / "dup.yaml")]


INFERENCE_CASES: list[tuple[InferenceSetup, tuple[str, ...]]] = [
    (predict_device_gpu, ("--device", "'gpu' is not a device")),
    (predict_device_missing, ("--device", "cuda:99", "asked for but")),
    (predict_batch_size_zero, ("--batch-size 0", "at least 1")),
    (predict_checkpoint_carrying_code, ("evil.pt", "refusing to load")),
    (predict_checkpoint_that_does_not_fit, ("shrunk.pt", "do not fit the network")),
    (predict_truncated_image_among_good_ones, ("val_003.png", "cannot read image")),
    (evaluate_input_size_one, ("--input-size", "too small", "16")),
    (evaluate_input_size_huge, ("--input-size", "too large", "4096")),
    (evaluate_device_tpu, ("--device", "'tpu' is not a device")),
    (evaluate_label_out_of_range_in_the_last_mask, ("val_003.png", "9")),
    (evaluate_description_with_duplicate_classes, ("dup.yaml", "bar", "more than once")),
]


@pytest.mark.parametrize("setup, needles", INFERENCE_CASES, ids=[setup.__name__ for setup, _ in INFERENCE_CASES])
def test_bad_predict_or_evaluate_input_is_one_line_and_nothing_else(tiny_dataset, tmp_path, capsys, setup, needles):
    model = _shapes_model(tmp_path / "model.pt")
    argv = setup(tiny_dataset, tmp_path, model)
    expect_refusal(capsys, argv, *needles)  # exactly one line on stderr: no progress bar before it
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "code-ran.marker").exists()


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
