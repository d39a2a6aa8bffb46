"""Shared fixtures: a tiny generated dataset (shapes on noise) and a config for it."""

from __future__ import annotations

import os
from pathlib import Path

# Tiny tensors gain nothing from threads, and spinning threads stall on a busy 2-core machine. Set
# before PyTorch loads, so runtime.threads: auto gives 1 here and in every process a test starts.
os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

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


VOLUME_SHAPE = (22, 18, 10)  # non-cubic
VOLUME_ZOOMS = (0.8, 0.8, 2.0)  # anisotropic: thick slices along axis 2
VOLUME_AFFINE = np.array(
    [[-0.8, 0.0, 0.0, 10.0], [0.0, 0.8, 0.0, -20.0], [0.0, 0.0, 2.0, 5.0], [0.0, 0.0, 0.0, 1.0]]
)


def draw_volume(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A bright ellipsoid (class 1) at a random place in noise, round in millimetres on the anisotropic grid."""
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(VOLUME_SHAPE, VOLUME_ZOOMS)), indexing="ij")
    centre = [rng.uniform(5.0, 12.0), rng.uniform(5.0, 9.0), rng.uniform(7.0, 13.0)]
    radii = [rng.uniform(3.0, 4.5), rng.uniform(3.0, 4.0), rng.uniform(5.0, 7.0)]
    inside = sum(((axis - c) / r) ** 2 for axis, c, r in zip((x, y, z), centre, radii)) <= 1
    labels = inside.astype(np.uint8)
    image = rng.normal(0.0, 1.0, VOLUME_SHAPE) + 2.5 * labels
    return image.astype(np.float32), labels


def write_volume_dataset(root: Path, count: int, seed: int = 0) -> Path:
    """A Decathlon task (dataset.json, imagesTr/, labelsTr/) of ``count`` generated volumes."""
    import json

    import nibabel as nib

    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for index in range(count):
        image, labels = draw_volume(rng)
        name = f"vol_{index:03d}.nii.gz"
        nib.save(nib.Nifti1Image(image, VOLUME_AFFINE), root / "imagesTr" / name)
        nib.save(nib.Nifti1Image(labels, VOLUME_AFFINE), root / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (root / "dataset.json").write_text(json.dumps({"name": "blobs", "training": training, "test": []}))
    description = {"name": "blob", "classes": ["background", "blob"], "palette": [[0, 0, 0], [220, 40, 40]]}
    (root / "blob.yaml").write_text(yaml.safe_dump(description))
    return root


def tiny_volume_config(root: Path, test_ids: tuple[str, ...] = ("vol_008", "vol_009"), **sections) -> dict:
    """A raw config for volumes that trains in seconds: 10 generated volumes, 2 held out for testing."""
    config = {
        "data": {
            "kind": "volume",
            "description": str(root / "blob.yaml"),
            "train": {"root": str(root), "layout": "decathlon", "split": "training", "exclude": list(test_ids)},
            "test": {"root": str(root), "layout": "decathlon", "split": "training", "include": list(test_ids)},
            "labeled_count": 2,
            "input_size": [16, 16],
            "volume": {"intensity": "zscore", "empty_ratio": 0.5, "context": 1},
        },
        "model": {"name": "small_unet", "options": {"base_channels": 4, "depth": 2}},
        "train": {"iterations": 8, "student_iterations": 4, "batch_size": 4, "lr": 0.05, "checkpoint_every": 2},
        "teacher_student": {"strategy": "atso", "generations": 1, "folds": 2},
        "evaluation": {"batch_size": 8},
        "runtime": {"device": "cpu", "quiet": True},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


@pytest.fixture
def tiny_volumes(tmp_path: Path) -> Path:
    """10 generated volumes of 22x18x10 voxels in a Decathlon folder."""
    return write_volume_dataset(tmp_path / "blobs", 10)


class _CreatesAFile:
    """Unpickling this calls ``open(marker, "w")``: proof that a loader ran code, without running a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_code_carrying_file(path: Path, marker_dir: Path, payload: dict | None = None) -> tuple[Path, Path]:
    """``torch.save`` of ``payload`` (default: a small state dict) plus a pickled call that would create a marker.

    Returns:
        The file and the marker's path: the marker exists only if some loader executed the pickle's call.
    """
    marker = marker_dir / "code-ran.marker"
    data = dict(payload if payload is not None else {"weight": torch.zeros(2)})
    data["hook"] = _CreatesAFile(marker)
    torch.save(data, path)
    assert not marker.exists()
    return path, marker


def run_until_killed(config, out: Path, point: str, report: bool = False, compare: bool = False) -> None:
    """Run in a forked child with ``ATSO_FAULT=point``; the child must die of SIGKILL there."""
    import os
    import signal
    import sys
    import traceback

    from atso import api
    from atso.runtime import faults

    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 0
        try:
            os.environ[faults.ENVIRONMENT_VARIABLE] = point
            api.run(config, out, compare=compare, log=lambda line: None, report=report)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"{point}: the run was never killed there"


def record_fsyncs(monkeypatch) -> list[Path]:
    """Record the path of every ``os.fsync`` from here on (files and folders), in order; Linux (/proc)."""
    import os

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to name what is fsynced")
    calls: list[Path] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls
