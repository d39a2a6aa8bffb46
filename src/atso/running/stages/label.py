"""The label stage: pseudo-label each reference fold with the teachers the plan names for it."""

from __future__ import annotations

from typing import Any

import numpy as np

from atso.errors import AtsoError
from atso.inference.labeler import class_balanced_thresholds, label_samples
from atso.running.context import RunContext
from atso.runtime import distributed
from atso.strategies.plan import LabelJob


def label(job: LabelJob, context: RunContext) -> dict[str, Any]:
    """Write the job's pseudo-label files (resuming per file); return the manifest's outputs."""
    predictor = context.predictor(context.load_models(list(job.inputs)), labeling=True)
    out_dir = context.run_dir.labels_dir(job.id)
    description, superclass_table = context.description, context.labels.superclass_table
    coarse = job.granularity == "super"
    if coarse and not context.modality.supports_superclasses:
        raise AtsoError("teacher_student.pseudo_labels: 'super' is for 2D images; volumes use full-class labels")
    if coarse and superclass_table is None:
        raise AtsoError(
            f"teacher_student.pseudo_labels: 'super' needs 'superclasses' in the dataset description '{description.name}'"
        )
    space = description.superclass_description() if coarse else description
    selection = context.config.teacher_student
    table = superclass_table if coarse else None
    palette = space.color_palette()
    thresholds: dict[str, list[float]] = {}
    relative = str(out_dir.relative_to(context.run_dir.path))
    if not context.split.reference:  # everything labeled (a full-supervision bound): nothing to pseudo-label
        return {"labels": relative, "samples": 0}
    for fold, teachers in job.teachers:
        # Under torchrun each rank labels its share; the files are per sample, so they merge by name.
        samples = distributed.shard([s.without_mask() for s in context.split.reference_folds[fold - 1]])
        threshold: float | np.ndarray | None = selection.confidence_threshold
        if selection.class_balanced_keep is not None:
            # Counted over the whole fold on every (re)run, so a resumed labeling uses the same thresholds.
            threshold = class_balanced_thresholds(
                predictor, samples, list(teachers), space.num_classes, selection.class_balanced_keep,
                desc=f"{job.id} R{fold} thresholds", superclass_table=table,
            )
            thresholds[str(fold)] = [round(float(t), 4) for t in threshold]
        label_samples(
            predictor, samples, list(teachers), out_dir, palette, description.ignore_index, threshold,
            fault_point=f"label:{job.id}", desc=f"{job.id} R{fold}", superclass_table=table,
            suffix=context.modality.label_suffix,
        )
    # label_samples returns once its files are on disk; rank 0 records the job only when every rank's are.
    distributed.barrier()
    outputs: dict[str, Any] = {"labels": relative, "samples": len(context.split.reference)}
    if thresholds:
        outputs["class_thresholds"] = thresholds
    return outputs
