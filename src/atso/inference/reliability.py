"""ST++'s image-level reliability: how far a teacher's earlier checkpoints agree with its final labels.

Yang et al. (ST++, CVPR 2022) rank unlabeled images by the mean IoU between the final model's
prediction and each earlier checkpoint's: where training kept changing the answer, the answer is
the likeliest wrong. Scores here are per sample (an image, or a whole volume after view fusion).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from atso.data.samples import Sample
from atso.errors import AtsoError
from atso.inference.predictor import Predictor
from atso.storage import read_json


def agreement_iou(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    """Mean IoU of two label maps over the classes either one predicts (1.0 where they are identical)."""
    a, b = a.astype(np.int64).ravel(), b.astype(np.int64).ravel()
    confusion = np.bincount(a * num_classes + b, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    intersection = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
    present = union > 0
    return float((intersection[present] / union[present]).mean()) if present.any() else 1.0


def snapshot_name(teacher: str, index: int) -> str:
    """The name a teacher's ``index``-th earlier checkpoint goes by among a predictor's models."""
    return f"{teacher}@{index}"


def stability_scores(
    predictor: Predictor,
    samples: list[Sample],
    teachers: list[str],
    snapshots: int,
    num_classes: int,
    desc: str = "reliability",
    superclass_table=None,
) -> dict[str, float]:
    """Each sample's reliability: the mean, over earlier checkpoints, of their agreement with the final teacher.

    An ensemble of teachers is compared with the ensemble of their ``k``-th checkpoints. The predictor
    must hold every teacher and every :func:`snapshot_name` of it.
    """
    groups = {"final": list(teachers)}
    groups.update({f"snapshot {k}": [snapshot_name(t, k) for t in teachers] for k in range(1, snapshots + 1)})
    scores = {}
    for sample, predictions in predictor.predict(samples, groups, desc=desc, superclass_table=superclass_table):
        final = predictions["final"].labels
        agreements = [agreement_iou(predictions[f"snapshot {k}"].labels, final, num_classes) for k in range(1, snapshots + 1)]
        scores[sample.id] = float(np.mean(agreements))
    return scores


def most_reliable(sample_ids: list[str], scores: dict[str, float], share: float) -> list[str]:
    """The ``share`` of ``sample_ids`` with the highest scores (at least one), in their given order.

    Ties are broken by the given order, so the selection is the same on every run.
    """
    count = max(1, math.ceil(share * len(sample_ids))) if sample_ids else 0
    ranked = sorted(range(len(sample_ids)), key=lambda i: (-scores[sample_ids[i]], i))
    chosen = set(ranked[:count])
    return [sample_id for i, sample_id in enumerate(sample_ids) if i in chosen]


def read_scores(path: Path, sample_ids: list[str]) -> dict[str, float]:
    """A labeling's scores (sample id -> stability), checked to cover ``sample_ids``.

    Raises:
        AtsoError: the file is missing, unreadable or lacks a sample (naming the file and the fix).
    """
    fix = "restore it, or start again with a new --out"
    if not path.is_file():
        raise AtsoError(f"{path}: the labeling's reliability scores are missing from the run directory; {fix}")
    scores = read_json(path)
    missing = [sample_id for sample_id in sample_ids if not isinstance(scores, dict) or sample_id not in scores]
    if missing:
        raise AtsoError(f"{path}: no reliability score for sample {missing[0]}; {fix}")
    return scores


def reliable_share(path: Path, folds: list[list[str]], share: float) -> set[str]:
    """The samples of each fold a student trains on first: its ``share`` a labeling scored most stable."""
    scores = read_scores(path, [sample_id for fold in folds for sample_id in fold])
    return {sample_id for fold in folds for sample_id in most_reliable(fold, scores, share)}
