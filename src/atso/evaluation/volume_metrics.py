"""Scores for 3D volumes: DSC per volume and per class, its mean over cases, and global DSC.

Medical segmentation is scored on the foreground classes ``1..C-1`` only: background fills most of a
scan, so its DSC is near 1 and would hide the organ's. Three numbers come out, as in the paper:

- ``mean_case_dice``: each volume's DSC per class, averaged over the volumes where the class is in
  the prediction or the reference ("average DSC over all test cases"), then over the classes;
- ``global_dice``: DSC per class of all volumes merged into one (the MSD criterion), then over classes;
- ``per_class_*``: the same per foreground class, for multi-class volumes.

A class in neither the prediction nor the reference of a volume has no DSC there (None), not 0 or 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from atso.evaluation.metrics import SegmentationScores, _iou_and_dice, _mean_or_none, _or_none


class VolumeScores:
    """Accumulates one confusion matrix per volume and summarises foreground DSC.

    Args:
        class_names: all classes, background (class 0) first.
        ignore_index: reference value that is not scored.
    """

    def __init__(self, class_names: list[str], ignore_index: int = 255) -> None:
        if len(class_names) < 2:
            raise ValueError("volume scores need a background and at least one foreground class")
        self.scores = SegmentationScores(class_names, ignore_index)

    @property
    def foreground(self) -> list[str]:
        return self.scores.class_names[1:]

    def labeled_only(self) -> "VolumeScores":
        """The same volumes scored on the voxels that had a prediction (see ``SegmentationScores.labeled_only``)."""
        kept = type(self)(self.scores.class_names, self.scores.ignore_index)
        kept.scores = self.scores.labeled_only()
        return kept

    def add_volume(
        self, prediction: Any, target: Any, case_id: str | None = None, unlabeled: int | None = None
    ) -> dict[str, float | None]:
        """Score one volume; returns its DSC per foreground class. ``unlabeled`` as in ``SegmentationScores.add_case``.

        Raises:
            ValueError: shapes differ or a value is outside the label space (see ``confusion_matrix``).
        """
        self.scores.add_case(prediction, target, case_id, unlabeled)
        matrix = self.scores.case_matrices[-1]  # with its misses, where labels were filtered
        return dict(zip(self.foreground, (_or_none(v) for v in _iou_and_dice(matrix)[1][1:])))

    def summary(self) -> dict[str, Any]:
        """JSON-ready foreground scores: per case, mean over cases and global, overall and per class."""
        full = self.scores.summary()
        cases = []
        for case_id, matrix in zip(self.scores.case_ids, self.scores.case_matrices):
            dice = _iou_and_dice(matrix)[1][1:]
            cases.append({
                "case_id": case_id,
                "dice": _mean_or_none(dice),
                "per_class_dice": {name: _or_none(v) for name, v in zip(self.foreground, dice)},
            })
        per_class_case = [full["per_class_case_dice"][name] for name in self.foreground]
        per_class_global = [full["per_class_dice"][name] for name in self.foreground]
        return {
            "per_class_case_dice": dict(zip(self.foreground, per_class_case)),
            "mean_case_dice": _mean_of(per_class_case),
            "per_class_global_dice": dict(zip(self.foreground, per_class_global)),
            "global_dice": _mean_of(per_class_global),
            "num_cases": full["num_cases"],
            "num_voxels": full["num_pixels"],
            "cases": cases,
            **({"labeled_fraction": full["labeled_fraction"]} if "labeled_fraction" in full else {}),
        }


def _mean_of(values: list[float | None]) -> float | None:
    return _mean_or_none(np.array([np.nan if v is None else v for v in values], dtype=np.float64))


def volume_dice(prediction: Any, target: Any, num_classes: int, ignore_index: int = 255) -> list[float | None]:
    """DSC of one volume for each foreground class ``1..C-1``; None where a class is in neither."""
    scores = VolumeScores([str(c) for c in range(num_classes)], ignore_index)
    return list(scores.add_volume(prediction, target).values())


def format_volume_scores(summary: dict[str, Any]) -> str:
    """A plain-text table of :meth:`VolumeScores.summary`: DSC per volume, then per class over cases and global."""
    names = list(summary["per_class_case_dice"])
    rows = [[case["case_id"] or "-", *(case["per_class_dice"][n] for n in names)] for case in summary["cases"]]
    rows.append(["mean over cases", *(summary["per_class_case_dice"][n] for n in names)])
    rows.append(["global (all merged)", *(summary["per_class_global_dice"][n] for n in names)])
    cells = [["volume", *(f"{n} DSC %" for n in names)]]
    cells += [[row[0], *("-" if v is None else f"{100 * v:.2f}" for v in row[1:])] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 2, "-" * len(lines[0]))
    return "\n".join(lines)
