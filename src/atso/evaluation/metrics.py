"""Segmentation scores from confusion matrices: IoU = |Y∩Z|/|Y∪Z|, DSC = 2|Y∩Z|/(|Y|+|Z|)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor; checked by duck type so torch stays optional here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def confusion_matrix(prediction: Any, target: Any, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Count pixels per (target class, predicted class), skipping pixels where the target is ignored.

    Args:
        prediction: integer array or tensor of predicted classes.
        target: integer array or tensor of the same shape; ``ignore_index`` marks unscored pixels.
        num_classes: number of classes ``C``.
        ignore_index: target value that is not scored.

    Returns:
        An int64 ``[C, C]`` matrix; rows are target classes, columns predicted classes.

    Raises:
        ValueError: shapes differ, the arrays are not integer, or a value is outside the label space.
    """
    prediction, target = _to_numpy(prediction), _to_numpy(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from target shape {target.shape}")
    for name, array in (("prediction", prediction), ("target", target)):
        if array.size and array.dtype.kind not in "iub":
            raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    target = target.reshape(-1).astype(np.int64)
    prediction = prediction.reshape(-1).astype(np.int64)
    scored = target != ignore_index
    target, prediction = target[scored], prediction[scored]
    if target.size and (target.min() < 0 or target.max() >= num_classes):
        bad = np.unique(target[(target < 0) | (target >= num_classes)])
        raise ValueError(
            f"target value(s) {bad.tolist()} are neither a class (0..{num_classes - 1}) nor ignore {ignore_index}"
        )
    if prediction.size and (prediction.min() < 0 or prediction.max() >= num_classes):
        bad = np.unique(prediction[(prediction < 0) | (prediction >= num_classes)])
        raise ValueError(f"prediction value(s) {bad.tolist()} are not a class (0..{num_classes - 1})")
    counts = np.bincount(target * num_classes + prediction, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _iou_and_dice(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and DSC; NaN where a class is in neither prediction nor target.

    ``matrix`` is ``[C, C]``, or ``[C, C + 1]`` whose last column counts target pixels left without a
    prediction (filtered pseudo-labels): they enlarge |Z| and count as misses, never as a class.
    """
    classes = matrix.shape[0]
    predicted = matrix[:, :classes]
    overlap = np.diag(predicted).astype(np.float64)
    sizes = matrix.sum(axis=1) + predicted.sum(axis=0)  # |Z| + |Y|
    defined = sizes > 0
    iou = np.full(len(matrix), np.nan)
    dice = np.full(len(matrix), np.nan)
    iou[defined] = overlap[defined] / (sizes[defined] - overlap[defined])
    dice[defined] = 2.0 * overlap[defined] / sizes[defined]
    return iou, dice


def _mean_or_none(values: np.ndarray) -> float | None:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else None


def mean_of_defined(values: list[Any]) -> float | None:
    """The mean of the values that are not None (None when there are none), for summaries of summaries."""
    defined = [float(v) for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def _or_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


class SegmentationScores:
    """Accumulates confusion matrices case by case and summarises them as IoU and DSC."""

    def __init__(self, class_names: list[str], ignore_index: int = 255) -> None:
        if not class_names:
            raise ValueError("class_names must name at least one class")
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.case_ids: list[str] = []
        self.case_matrices: list[np.ndarray] = []
        num_classes = len(self.class_names)
        # One column more than classes: target pixels without a prediction (see ``add_case``'s ``unlabeled``).
        self._total = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
        self._filtered = False  # whether any case had unlabeled pixels to count

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def total(self) -> np.ndarray:
        """The confusion matrix of all cases merged (predicted pixels only)."""
        return self._total[:, : self.num_classes].copy()

    def labeled_only(self) -> "SegmentationScores":
        """The same cases scored on the pixels that had a prediction: their misses (unlabeled pixels) dropped."""
        kept = SegmentationScores(self.class_names, self.ignore_index)
        for case_id, matrix in zip(self.case_ids, self.case_matrices):
            matrix = matrix.copy()
            matrix[:, -1] = 0
            kept.case_ids.append(case_id)
            kept.case_matrices.append(matrix)
            kept._total += matrix
        return kept

    def add_case(self, prediction: Any, target: Any, case_id: str | None = None, unlabeled: int | None = None) -> np.ndarray:
        """Score one case (an image or a volume) and return its confusion matrix.

        Args:
            unlabeled: a prediction value meaning "no label" (a pseudo-label filtered out): such pixels
                count as misses of their target class, so a score covers every pixel, not just the kept.

        Returns:
            The case's ``[C, C]`` confusion matrix (its misses are kept in ``case_matrices``' last column).
        """
        prediction, target = _to_numpy(prediction), _to_numpy(target)
        missed = np.zeros(self.num_classes, dtype=np.int64)
        if unlabeled is not None:
            dropped = prediction == unlabeled
            lost = target[dropped & (target != self.ignore_index)].astype(np.int64)
            if lost.size and lost.max() >= self.num_classes:
                raise ValueError(f"target value(s) {np.unique(lost[lost >= self.num_classes]).tolist()} are not a class")
            missed = np.bincount(lost, minlength=self.num_classes)[: self.num_classes]
            target = np.where(dropped, self.ignore_index, target)
            self._filtered = self._filtered or bool(dropped.any())
        matrix = np.concatenate(
            [confusion_matrix(prediction, target, self.num_classes, self.ignore_index), missed[:, None]], axis=1
        )
        self.case_ids.append(case_id if case_id is not None else str(len(self.case_ids)))
        self.case_matrices.append(matrix)
        self._total += matrix
        return matrix[:, : self.num_classes]

    def summary(self) -> dict[str, Any]:
        """JSON-ready scores; a class in neither prediction nor target has score None, not 0."""
        iou, dice = _iou_and_dice(self._total)
        cases = []
        case_dice = np.full((len(self.case_matrices), self.num_classes), np.nan)
        for index, (case_id, matrix) in enumerate(zip(self.case_ids, self.case_matrices)):
            case_iou, case_dice[index] = _iou_and_dice(matrix)
            cases.append({"case_id": case_id, "miou": _mean_or_none(case_iou), "dice": _mean_or_none(case_dice[index])})
        # Average each class over the cases where it is defined, then over classes (MSD "mean DSC").
        defined = ~np.isnan(case_dice)
        counts = defined.sum(axis=0)
        per_class_case_dice = np.where(defined, case_dice, 0.0).sum(axis=0) / np.maximum(counts, 1)
        per_class_case_dice[counts == 0] = np.nan
        num_pixels = int(self._total.sum())
        missed = int(self._total[:, -1].sum())
        summary = {
            "per_class_iou": {name: _or_none(value) for name, value in zip(self.class_names, iou)},
            "miou": _mean_or_none(iou),
            "per_class_dice": {name: _or_none(value) for name, value in zip(self.class_names, dice)},
            "global_dice": _mean_or_none(dice),
            "per_class_case_dice": {name: _or_none(v) for name, v in zip(self.class_names, per_class_case_dice)},
            "mean_case_dice": _mean_or_none(per_class_case_dice),
            "pixel_accuracy": float(np.trace(self._total[:, : self.num_classes]) / num_pixels) if num_pixels else None,
            "num_cases": len(self.case_matrices),
            "num_pixels": num_pixels,
            "cases": cases,
        }
        if self._filtered:  # the share of scored pixels that had a label at all
            summary["labeled_fraction"] = 1.0 - missed / num_pixels if num_pixels else None
        return summary


def agreement(prediction_a: Any, prediction_b: Any, num_classes: int) -> float:
    """mIoU of ``prediction_a`` scored against ``prediction_b``: how far a teacher and student agree.

    Raises:
        ValueError: the maps differ in shape, hold values outside ``0..num_classes - 1``, or are empty.
    """
    matrix = confusion_matrix(prediction_a, prediction_b, num_classes, ignore_index=-1)
    miou = _mean_or_none(_iou_and_dice(matrix)[0])
    if miou is None:
        raise ValueError("agreement needs at least one pixel to compare")
    return miou


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.2f}"


def format_scores_table(summary: dict[str, Any]) -> str:
    """A plain-text table of a :meth:`SegmentationScores.summary`: one row per class, then the means."""
    names = list(summary["per_class_iou"])
    width = max(len("class"), *(len(name) for name in names))
    header = f"{'class':<{width}}  {'IoU %':>7}  {'DSC %':>7}  {'case DSC %':>10}"
    lines = [header, "-" * len(header)]
    for name in names:
        lines.append(
            f"{name:<{width}}  {_percent(summary['per_class_iou'][name]):>7}"
            f"  {_percent(summary['per_class_dice'][name]):>7}"
            f"  {_percent(summary['per_class_case_dice'][name]):>10}"
        )
    lines.append("-" * len(header))
    for label, key in (
        ("mIoU", "miou"),
        ("mean DSC (per case)", "mean_case_dice"),
        ("global DSC (cases merged)", "global_dice"),
        ("pixel accuracy", "pixel_accuracy"),
    ):
        lines.append(f"{label + ':':<27}{_percent(summary[key]):>7}")
    lines.append(f"{'cases / pixels:':<27}{summary['num_cases']} / {summary['num_pixels']}")
    return "\n".join(lines)
