"""The bundled demo: all four strategies on a small CamVid subset shipped inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from atso.config import Config, apply_overrides, config_from_dict


def demo_data_root() -> Path:
    """Folder of the bundled CamVid subset (train/, trainannot/, val/, valannot/)."""
    return Path(str(resources.files("atso").joinpath("demo_data", "camvid_mini")))


def demo_config(quick: bool = False, overrides: list[str] | None = None) -> Config:
    """A config that finishes the four-strategy comparison in a few minutes on 2 CPU cores."""
    root = str(demo_data_root())
    data = {
        "data": {
            "description": "camvid",
            "train": {"root": root, "split": "train"},
            "test": {"root": root, "split": "val"},
            "labeled_count": 10,
            "input_size": [64, 80],
        },
        "model": {"name": "small_unet", "options": {"base_channels": 8}},
        # Students fine-tune M0 (lr 0.01) on S and the strong view of their pseudo-labels, as in the evidence recipe.
        "train": {
            "iterations": 300, "student_iterations": 150, "batch_size": 8, "lr": 0.05, "student_lr": 0.01,
            "checkpoint_every": 100,
        },
        "teacher_student": {"generations": 2, "folds": 2},
        "evaluation": {"batch_size": 16},
    }
    if quick:
        data["train"].update({"iterations": 20, "student_iterations": 10, "checkpoint_every": 10})
        data["teacher_student"]["generations"] = 1
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data, source="atso demo")
