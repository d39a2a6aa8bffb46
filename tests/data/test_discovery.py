"""``atso init``'s recognition of dataset folders: layout, classes, counts, and a data section that loads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from atso.config import config_from_dict
from atso.data.discovery import discover
from atso.errors import AtsoError

from conftest import write_dataset, write_volume_dataset


def test_a_camvid_layout_gives_train_val_and_classes_by_mask_value(tmp_path):
    root = write_dataset(tmp_path / "shapes", {"train": 16, "val": 4})
    found = discover(root)
    assert (found.layout, found.kind) == ("camvid", "image")
    assert found.data["train"] == {"root": str(root), "split": "train"}
    assert found.data["test"] == {"root": str(root), "split": "val"}
    assert found.counts == {"train": 16, "test": 4}
    assert found.data["labeled_count"] == 2 and found.data["input_size"] == [32, 48]  # 32x40 in multiples of 16
    assert found.classes == ["class_0", "class_1", "class_2", "class_3"]  # values 0-3; 3 is the raw "unlabelled"
    assert found.description == {"name": "shapes", "classes": found.classes, "ignore_index": 255}


def test_a_segnet_camvid_copy_gets_the_builtin_description(tmp_path):
    root = write_dataset(tmp_path / "camvid", {"train": 8})
    for index, mask in enumerate(sorted((root / "trainannot").glob("*.png"))):
        Image.fromarray(np.full((32, 40), index % 8 + 4 * (index == 0), np.uint8)).save(mask)
    found = discover(root)
    assert found.data["description"] == "camvid" and found.description is None and len(found.classes) == 11
    assert found.counts["test"] == 0 and any("no test set" in note for note in found.notes)


def test_a_decathlon_task_takes_classes_from_labels_and_holds_out_every_fourth_case(tmp_path):
    root = write_volume_dataset(tmp_path / "task", 9)
    manifest = json.loads((root / "dataset.json").read_text())
    manifest["labels"] = {"1": "left atrium", "0": "background"}
    (root / "dataset.json").write_text(json.dumps(manifest))
    found = discover(root)
    assert (found.layout, found.kind) == ("decathlon", "volume")
    assert found.classes == ["background", "left_atrium"]
    assert found.data["test"]["include"] == ["vol_003", "vol_007"] == found.data["train"]["exclude"]
    assert found.counts == {"train": 7, "test": 2} and found.data["labeled_count"] == 1
    config = config_from_dict({"data": {**found.data, "description": "left-atrium"}})
    assert config.data.kind == "volume" and config.data.test.layout == "decathlon"


def test_images_and_masks_folders_have_no_test_set(tmp_path):
    root = write_dataset(tmp_path / "raw", {"train": 4})
    shutil.move(root / "train", root / "images")
    shutil.move(root / "trainannot", root / "masks")
    found = discover(root)
    assert found.layout == "folders" and found.data["train"] == {"images": str(root / "images"), "masks": str(root / "masks")}
    assert "test" not in found.data and found.counts == {"train": 4, "test": 0}


def test_an_unknown_folder_says_which_layouts_are_known(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(AtsoError, match="not a dataset layout atso knows; it recognises CamVid .*dataset.json.*images/ masks/"):
        discover(tmp_path / "pictures")
    with pytest.raises(AtsoError, match="no such folder"):
        discover(tmp_path / "nowhere")
