"""Pseudo-labels: a teacher (or ensemble) labels reference samples, one PNG per sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from atso.data.images import write_label_png
from atso.data.samples import Sample
from atso.data.volumes import write_volume
from atso.inference.predictor import Predictor
from atso.runtime import distributed
from atso.runtime.faults import maybe_crash
from atso.storage import fsync_files, make_folder


def label_samples(
    predictor: Predictor,
    samples: list[Sample],
    teachers: list[str],
    out_dir: Path,
    palette: list[tuple[int, int, int]],
    ignore_index: int = 255,
    confidence_threshold: float | np.ndarray | None = None,
    fault_point: str | None = None,
    desc: str = "label",
    superclass_table=None,
    suffix: str = ".png",
) -> dict[str, float]:
    """Write ``out_dir/<id>.png`` hard labels for each sample; pixels below the threshold get ``ignore_index``.

    The threshold is one number, or one per class (indexed by each pixel's label; see
    :func:`class_balanced_thresholds`).

    Volumes (``suffix=".nii.gz"``) are written as NIfTI on their scan's grid (affine and header).

    With ``superclass_table`` the labels are super-classes (the teachers' probabilities summed per group).

    A sample whose file already exists is skipped: files are written atomically, so an existing file is
    complete, and an interrupted labeling resumes where it stopped.

    Files are written without an fsync each and flushed together at the end, the skipped ones too (a
    killed labeling may have left them in the page cache only): when this returns, every label file
    of ``samples`` is on disk, and only then may the job be recorded finished.

    Returns:
        ``labeled`` (new files) and ``kept_fraction`` (pixels above the threshold, over new files).
    """
    make_folder(out_dir)
    paths = [out_dir / f"{sample.id}{suffix}" for sample in samples]
    todo = [sample for sample, path in zip(samples, paths) if not path.is_file()]
    kept = total = 0
    predictions_by_sample = predictor.predict(
        todo, {"teacher": list(teachers)}, desc=desc, superclass_table=superclass_table
    )
    for written, (sample, predictions) in enumerate(predictions_by_sample, start=1):
        prediction = predictions["teacher"]
        labels = prediction.labels.copy()
        if confidence_threshold is not None:
            threshold = confidence_threshold[labels] if isinstance(confidence_threshold, np.ndarray) else confidence_threshold
            low = prediction.confidence < threshold
            labels[low] = ignore_index
            kept += int((~low).sum())
        else:
            kept += labels.size
        total += labels.size
        if prediction.grid is not None:
            write_volume(out_dir / f"{sample.id}{suffix}", labels.astype(np.uint8), like=prediction.grid, fsync=False)
        else:
            write_label_png(out_dir / f"{sample.id}{suffix}", labels.astype(np.uint8), palette, ignore_index, fsync=False)
        if fault_point is not None:
            maybe_crash(f"{fault_point}:{written}")
    fsync_files(paths)
    return {"labeled": float(len(todo)), "kept_fraction": kept / total if total else 1.0}


_BINS, _BIN_WIDTH = 1600, 0.01  # bins of -log(1 - p) from 0 to 16 (p up to 1 - 1e-7)


def class_balanced_thresholds(
    predictor: Predictor,
    samples: list[Sample],
    teachers: list[str],
    num_classes: int,
    keep: float,
    desc: str = "thresholds",
    superclass_table=None,
) -> np.ndarray:
    """Per-class confidence thresholds that keep the most confident ``keep`` share of each class's pixels.

    Class-balanced self-training (Zou et al., ECCV 2018): one global threshold drops the rare classes
    first, because a teacher is least sure of them, so students see fewer of them each generation.
    Confidences are counted in bins of -log(1 - p), fine where trained models put most pixels (near
    1); pixels tied in a bin are kept together, so a class may keep a little more than its share.
    Under torchrun every process counts its share of the samples and the counts are summed, so all
    processes agree on the thresholds.
    """
    counts = np.zeros(num_classes * _BINS, dtype=np.int64)
    for _, predictions in predictor.predict(samples, {"teacher": list(teachers)}, desc=desc, superclass_table=superclass_table):
        prediction = predictions["teacher"]
        bin_of = _confidence_bin(prediction.confidence)
        counts += np.bincount(prediction.labels.astype(np.int64).ravel() * _BINS + bin_of.ravel(), minlength=counts.size)
    histogram = distributed.all_reduce_sum(torch.from_numpy(counts)).numpy().reshape(num_classes, _BINS)
    at_or_above = histogram[:, ::-1].cumsum(axis=1)[:, ::-1]  # pixels of class c with a bin >= b
    needed = keep * histogram.sum(axis=1, keepdims=True)
    # The highest bin whose count from there up still reaches the share; a class never predicted keeps 0.
    highest = np.maximum(np.where(at_or_above >= needed, np.arange(_BINS), -1).max(axis=1), 0)
    thresholds = 1.0 - np.exp(-highest * _BIN_WIDTH)
    return np.where(histogram.sum(axis=1) > 0, thresholds, 0.0).astype(np.float32)


def _confidence_bin(confidence: np.ndarray) -> np.ndarray:
    surprise = -np.log1p(-np.minimum(confidence.astype(np.float64), 1 - 1e-7))
    return np.minimum((surprise / _BIN_WIDTH).astype(np.int64), _BINS - 1)
