"""Shared fixtures: a tiny generated dataset (shapes on noise) and a config for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

# Tiny tensors gain nothing from threads, and spinning threads stall on a busy 2-core machine.
torch.set_num_threads(1)

CLASSES = ["background", "square", "bar"]


def draw_sample(rng: np.random.Generator, height: int = 32, width: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with a red square (class 1) and a blue bar (class 2) on noise, and its label map."""
    image = rng.integers(60, 120, size=(height, width, 3)).astype(np.uint8)
    labels = np.zeros((height, width), dtype=np.uint8)
    top, left = rng.integers(0, height - 10), rng.integers(0, width - 10)
    size = int(rng.integers(6, 10))
    image[top : top + size, left : left + size] = (220, 40, 40)
    labels[top : top + size, left : left + size] = 1
    column = int(rng.integers(0, width - 4))
    image[:, column : column + 3] = (40, 40, 220)
    labels[:, column : column + 3] = 2
    labels[0, 0] = 3  # raw value 3 is "unlabelled" and remapped to ignore by the description
    return image, labels


def write_dataset(root: Path, splits: dict[str, int], seed: int = 0) -> Path:
    """Write a CamVid-layout dataset (SPLIT/, SPLITannot/) of generated samples."""
    rng = np.random.default_rng(seed)
    for split, count in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, labels = draw_sample(rng)
            name = f"{split}_{index:03d}.png"
            Image.fromarray(image).save(root / split / name)
            Image.fromarray(labels).save(root / f"{split}annot" / name)
    description = {
        "name": "shapes",
        "classes": CLASSES,
        "ignore_index": 255,
        "palette": [[0, 0, 0], [220, 40, 40], [40, 40, 220]],
        "remap": {3: 255},
    }
    (root / "shapes.yaml").write_text(yaml.safe_dump(description))
    return root


def tiny_config(root: Path, **sections) -> dict:
    """A raw config mapping that trains in a second or two on the tiny dataset."""
    config = {
        "data": {
            "description": str(root / "shapes.yaml"),
            "train": {"root": str(root), "split": "train"},
            "test": {"root": str(root), "split": "val"},
            "labeled_count": 4,
            "input_size": [32, 40],
        },
        "model": {"name": "small_unet", "options": {"base_channels": 4, "depth": 2}},
        "train": {"iterations": 12, "student_iterations": 6, "batch_size": 4, "lr": 0.05, "checkpoint_every": 3},
        "teacher_student": {"strategy": "atso", "generations": 1, "folds": 2},
        "evaluation": {"batch_size": 4},
        "runtime": {"device": "cpu", "quiet": True},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """12 training and 4 test samples of 32x40 pixels."""
    return write_dataset(tmp_path / "shapes", {"train": 12, "val": 4})


@pytest.fixture
def tiny_config_file(tiny_dataset: Path, tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_dataset)))
    return path
