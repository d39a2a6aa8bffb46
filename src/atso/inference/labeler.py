"""Pseudo-labels: a teacher (or ensemble) labels reference samples, one PNG per sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atso.data.images import write_label_png
from atso.data.samples import Sample
from atso.data.volumes import write_volume
from atso.inference.predictor import Predictor
from atso.running.faults import maybe_crash
from atso.storage import make_folder


def label_samples(
    predictor: Predictor,
    samples: list[Sample],
    teachers: list[str],
    out_dir: Path,
    palette: list[tuple[int, int, int]],
    ignore_index: int = 255,
    confidence_threshold: float | None = None,
    fault_point: str | None = None,
    desc: str = "label",
    superclass_table=None,
    suffix: str = ".png",
) -> dict[str, float]:
    """Write ``out_dir/<id>.png`` hard labels for each sample; pixels below the threshold get ``ignore_index``.

    Volumes (``suffix=".nii.gz"``) are written as NIfTI on their scan's grid (affine and header).

    With ``superclass_table`` the labels are super-classes (the teachers' probabilities summed per group).

    A sample whose file already exists is skipped: files are written atomically, so an existing file is
    complete, and an interrupted labeling resumes where it stopped.

    Returns:
        ``labeled`` (new files) and ``kept_fraction`` (pixels above the threshold, over new files).
    """
    make_folder(out_dir)
    todo = [sample for sample in samples if not (out_dir / f"{sample.id}{suffix}").is_file()]
    kept = total = 0
    predictions_by_sample = predictor.predict(
        todo, {"teacher": list(teachers)}, desc=desc, superclass_table=superclass_table
    )
    for written, (sample, predictions) in enumerate(predictions_by_sample, start=1):
        prediction = predictions["teacher"]
        labels = prediction.labels.copy()
        if confidence_threshold is not None:
            low = prediction.confidence < confidence_threshold
            labels[low] = ignore_index
            kept += int((~low).sum())
        else:
            kept += labels.size
        total += labels.size
        if prediction.grid is not None:
            write_volume(out_dir / f"{sample.id}{suffix}", labels.astype(np.uint8), like=prediction.grid)
        else:
            write_label_png(out_dir / f"{sample.id}{suffix}", labels.astype(np.uint8), palette, ignore_index)
        if fault_point is not None:
            maybe_crash(f"{fault_point}:{written}")
    return {"labeled": float(len(todo)), "kept_fraction": kept / total if total else 1.0}
