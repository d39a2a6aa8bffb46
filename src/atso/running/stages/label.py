"""The label stage: pseudo-label each reference fold with the teachers the plan names for it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from atso.checkpoints import load_model
from atso.errors import AtsoError
from atso.inference.labeler import class_balanced_thresholds, label_samples
from atso.inference.reliability import read_scores, snapshot_name, stability_scores
from atso.running.context import RunContext
from atso.runtime import distributed
from atso.storage import atomic_write_json
from atso.strategies.plan import LabelJob


def label(job: LabelJob, context: RunContext) -> dict[str, Any]:
    """Write the job's pseudo-label files (resuming per file); return the manifest's outputs."""
    teacher_models = context.load_models(list(job.inputs))
    predictor = context.predictor(teacher_models, labeling=True)
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
    reliability = _reliability(job, context, teacher_models, space.num_classes, table) if selection.reliability.enabled else None
    # label_samples returns once its files are on disk; rank 0 records the job only when every rank's are.
    distributed.barrier()
    outputs: dict[str, Any] = {"labels": relative, "samples": len(context.split.reference)}
    if thresholds:
        outputs["class_thresholds"] = thresholds
    if reliability is not None:
        outputs["reliability"] = reliability
    return outputs


def _reliability(
    job: LabelJob, context: RunContext, teachers: dict[str, torch.nn.Module], num_classes: int, superclass_table
) -> dict[str, Any]:
    """Score every labeled sample's stability (ST++) into the labeling's reliability file; summarise it.

    Under torchrun each process scores its share of each fold and the scores are summed into place,
    so every process holds them all; rank 0 writes the file. A file already there is complete
    (written atomically) and is read back instead.
    """
    path = context.run_dir.reliability_path(job.id)
    snapshots = context.config.teacher_student.reliability.snapshots
    if path.is_file():
        scores = read_scores(path, [s.id for fold, _ in job.teachers for s in context.split.reference_folds[fold - 1]])
    else:
        models = dict(teachers)
        for teacher in sorted(teachers):
            for k in range(1, snapshots + 1):
                snapshot = context.run_dir.snapshot_path(teacher, k)
                if not snapshot.is_file():
                    raise AtsoError(
                        f"{snapshot}: teacher_student.reliability ranks {teacher}'s labels by its earlier checkpoints, "
                        "and this one is missing from the run directory; restore it, or start again with a new --out"
                    )
                models[snapshot_name(teacher, k)] = load_model(snapshot, context.device)[0]
        predictor = context.predictor(models, labeling=True)
        scores = {}
        for fold, fold_teachers in job.teachers:
            samples = [s.without_mask() for s in context.split.reference_folds[fold - 1]]
            mine = stability_scores(
                predictor, distributed.shard(samples), list(fold_teachers), snapshots, num_classes,
                desc=f"{job.id} R{fold} reliability", superclass_table=superclass_table,
            )
            values = torch.tensor([mine.get(s.id, 0.0) for s in samples], dtype=torch.float64)
            values = distributed.all_reduce_sum(values)  # each sample is scored by one process alone
            scores.update({s.id: float(v) for s, v in zip(samples, values.tolist())})
        if distributed.is_main():
            atomic_write_json(path, scores)
    values = np.array(list(scores.values()), dtype=np.float64)
    return {
        "file": str(path.relative_to(context.run_dir.path)),
        "mean": round(float(values.mean()), 4) if values.size else None,
        "min": round(float(values.min()), 4) if values.size else None,
    }
