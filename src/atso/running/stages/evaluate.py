"""The evaluate stage: @E of the job's models (each, and their ensemble), agreement with M0, @R of its labeling.

Images and volumes share this code; each modality names its headline scores (mIoU for images,
foreground DSC for volumes), so their records keep the keys they have always had.

M0 is predicted on E once per run: the first evaluation that predicts it keeps its labels under
``jobs/g0/m0/test_labels/`` (:class:`M0TestLabels`), and every later one reads them for the
agreement with M0 instead of predicting the test set with M0 again (on volumes, three views of
every scan per generation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from atso.data.samples import Sample
from atso.evaluation.metrics import SegmentationScores, mean_of_defined
from atso.inference.predictor import Prediction
from atso.inference.reliability import reliable_share
from atso.running.context import RunContext
from atso.runtime import distributed
from atso.storage import atomic_write_json, fsync_files, read_json
from atso.strategies.plan import M0, EvaluateJob


class M0TestLabels:
    """M0's labels of the test set, one label file per sample under M0's job folder, written once.

    ``complete.json`` is written last, after the files are on disk, and names the config fingerprint
    and the test samples: a folder without it (a killed evaluation), or made under another config
    (``--force``), is predicted and written again. The files equal M0's predictions bit for bit (label
    maps and NIfTI hold the class indices themselves), so reading them gives the agreement that
    predicting again would.
    """

    def __init__(self, context: RunContext) -> None:
        self.modality = context.modality
        self.folder = context.run_dir.job_dir(M0) / "test_labels"
        self.expected = {"fingerprint": context.config.fingerprint(), "samples": [s.id for s in context.split.test]}
        done = self.folder / "complete.json"
        self.stored = done.is_file() and read_json(done) == self.expected
        self.written: list[Path] = []

    def read(self, sample: Sample) -> np.ndarray:
        return self.modality.read_labels(self.folder / f"{sample.id}{self.modality.label_suffix}")

    def keep(self, sample: Sample, prediction: Prediction) -> None:
        """Write M0's prediction of ``sample``, unless the folder is complete; flushed by :meth:`finish`."""
        if not self.stored:
            self.written.append(self.modality.write_prediction(self.folder, sample, prediction, fsync=False)[0])

    def finish(self) -> None:
        """Flush the files kept, then record the folder complete (only if every test sample was kept)."""
        if not self.stored and len(self.written) == len(self.expected["samples"]):
            fsync_files(self.written)
            atomic_write_json(self.folder / "complete.json", self.expected)
            self.stored = True


def evaluate(job: EvaluateJob, context: RunContext) -> dict[str, Any]:
    """Write the job's metrics record (rank 0 alone: scoring is quick); return the manifest's outputs."""
    if not distributed.is_main():
        return {}
    record: dict[str, Any] = {"job": job.id, "strategy": job.strategy, "generation": job.generation}
    record.update(context.modality.record_head)
    if context.split.test:
        record.update(score_test_set(job, context))
    if job.labeling is not None:
        record.update(score_labeling(job.labeling, job.previous_labeling, context))
    path = context.run_dir.metrics_file(job.id)
    atomic_write_json(path, record)
    if context.observer is not None:
        context.observer.evaluation(record, list(context.plan.strategies), context.plan.generations)
    return {"metrics": str(path.relative_to(context.run_dir.path)),
            "test_miou": record.get("test_miou"), "reference_miou": record.get("reference_miou"),
            "test_dice": record.get("test_dice"), "reference_dice": record.get("reference_dice")}


def score_test_set(job: EvaluateJob, context: RunContext) -> dict[str, Any]:
    """Scores of each model and the ensemble on E, at full (and super-class) granularity, and agreement with M0."""
    modality, labels = context.modality, context.labels
    names, ignore = labels.description.classes, labels.description.ignore_index
    groups = {model: [model] for model in job.models}
    if len(job.models) > 1:
        groups["ensemble"] = list(job.models)
    m0_labels = M0TestLabels(context)
    if M0 not in job.models and not m0_labels.stored:
        groups["__m0__"] = [M0]
    predictor = context.predictor(context.load_models(sorted({m for group in groups.values() for m in group})))
    scores = {group: modality.scores(names, ignore) for group in groups if group != "__m0__"}
    agreement = {group: modality.scores(names, 255) for group in scores}
    coarse_names = modality.superclass_names()
    coarse_scores = {group: SegmentationScores(coarse_names, ignore) for group in scores} if coarse_names else {}
    for sample, predictions in predictor.predict(context.split.test, groups, desc=job.id):
        predicted = predictions.get(M0, predictions.get("__m0__"))
        if predicted is None:
            m0 = m0_labels.read(sample)
        else:
            m0 = predicted.labels
            m0_labels.keep(sample, predicted)
        truth = modality.read_truth(sample, labels.mask_description(sample), m0.shape)
        for group, score in scores.items():
            prediction = predictions[group].labels
            score.add_case(prediction, truth, sample.id)
            agreement[group].add_case(prediction, m0, sample.id)
            if coarse_names:
                coarse_scores[group].add_case(labels.to_superclasses(prediction), labels.to_superclasses(truth), sample.id)
    m0_labels.finish()
    headline = modality.headline[0][1]
    record: dict[str, Any] = {"test": {group: _summary(s, modality.keeps_case_lists) for group, s in scores.items()}}
    if coarse_names:
        record["test_super"] = {group: _summary(s) for group, s in coarse_scores.items()}
        record["test_super_miou"] = mean_of_defined([record["test_super"][m]["miou"] for m in job.models])
    record["agreement_with_m0"] = {group: a.summary()[headline] for group, a in agreement.items()}
    # A generation's headline is the mean over its students, each a single model like the other
    # strategies' students; the ensemble is reported beside it.
    for suffix, key in modality.headline:
        record[f"test_{suffix}"] = mean_of_defined([record["test"][m][key] for m in job.models])
    record["agreement_with_m0_mean"] = mean_of_defined([record["agreement_with_m0"][m] for m in job.models])
    if len(job.models) > 1:
        record[f"test_ensemble_{modality.headline[0][0]}"] = record["test"]["ensemble"][headline]
    return record


def score_labeling(labeling: str, previous: str | None, context: RunContext) -> dict[str, Any]:
    """Pseudo-label accuracy against R's truth (a diagnostic that never feeds training), and how much changed."""
    modality, labels, run_dir = context.modality, context.labels, context.run_dir
    names, ignore = labels.description.classes, labels.description.ignore_index
    coarse = context.granularity(labeling) == "super"
    coarse_names = modality.superclass_names()
    scores = modality.scores(names, ignore)
    coarse_scores = SegmentationScores(coarse_names, ignore) if coarse_names else None
    reliable = _reliable_samples(labeling, context)
    # With ST++'s selection, @R of the reliable share and of the rest: whether the ranking finds the better labels.
    by_reliability = {True: modality.scores(names, ignore), False: modality.scores(names, ignore)} if reliable is not None else {}
    changed = compared = 0
    scored = False
    for sample in context.split.reference:
        # Labels are written on the sample's own grid, and preflight checked the truth against it: their
        # shape stands for the sample's, which spares decoding every reference scan again here.
        pseudo = modality.read_labels(run_dir.labels_dir(labeling) / f"{sample.id}{modality.label_suffix}")
        if sample.mask is not None:
            truth = modality.read_truth(sample, labels.mask_description(sample), pseudo.shape)
            # Over every pixel: a filtered-out pseudo-label is a miss of its class, not left out of the score.
            if not coarse:
                scores.add_case(pseudo, truth, sample.id, unlabeled=ignore)
                if reliable is not None:
                    by_reliability[sample.id in reliable].add_case(pseudo, truth, sample.id, unlabeled=ignore)
            if coarse_scores is not None:
                coarse_labels = pseudo if coarse else labels.to_superclasses(pseudo)
                coarse_scores.add_case(coarse_labels, labels.to_superclasses(truth), sample.id, unlabeled=ignore)
            scored = True
        if previous is not None:
            before = modality.read_labels(run_dir.labels_dir(previous) / f"{sample.id}{modality.label_suffix}", pseudo.shape)
            changed += int((before != pseudo).sum())
            compared += pseudo.size
    result: dict[str, Any] = {}
    if scored and not coarse:
        summary = scores.summary()
        result["reference"] = _summary(scores, modality.keeps_case_lists)
        for suffix, key in modality.headline:
            result[f"reference_{suffix}"] = summary[key]
        if "labeled_fraction" in summary:  # labels were filtered: the kept share, and @R on the kept alone
            result["reference_labeled_fraction"] = summary["labeled_fraction"]
            result[f"reference_kept_{modality.headline[0][0]}"] = scores.labeled_only().summary()[modality.headline[0][1]]
        for is_reliable, part in by_reliability.items():
            name = "reliable" if is_reliable else "unreliable"
            result[f"reference_{name}_{modality.headline[0][0]}"] = part.summary()[modality.headline[0][1]]
    if scored and coarse_scores is not None:
        result["reference_super"] = _summary(coarse_scores)
        result["reference_super_miou"] = result["reference_super"]["miou"]
    result["granularity"] = "super" if coarse else "full"
    if previous is not None and compared:
        result["changed_fraction"] = changed / compared
    first = {key: result.pop(key) for key in modality.labeling_keys_first if key in result}
    return {**first, **result}


def _reliable_samples(labeling: str, context: RunContext) -> set[str] | None:
    """The samples of each fold a student trains on first (``teacher_student.reliability``), if they were scored."""
    path = context.run_dir.reliability_path(labeling)
    if not context.config.teacher_student.reliability.enabled or not path.is_file():
        return None
    folds = [[s.id for s in fold] for fold in context.split.reference_folds]
    return reliable_share(path, folds, context.config.teacher_student.reliability.share)


def _summary(scores: Any, with_cases: bool = False) -> dict[str, Any]:
    """A summary, without the per-case list unless asked (kept small for metrics.jsonl)."""
    summary = scores.summary()
    return summary if with_cases else {key: value for key, value in summary.items() if key != "cases"}
