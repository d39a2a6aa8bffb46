"""The volume side of a run's jobs: train a model's view networks on slices, score fused volumes.

The runner hands volume jobs here; plans, labeling and storage are the same as for images.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from atso.checkpoints import load_pretrained, load_weights, save_model
from atso.data.volume_slices import SliceAugmentation, SliceIntensityJitter, SliceTrainingDataset, VolumePair, read_pseudo_label_volume
from atso.data.volumes import read_label_volume
from atso.evaluation.metrics import mean_of_defined
from atso.evaluation.volume_metrics import VolumeScores
from atso.models.views import ViewNetworks
from atso.running import distributed
from atso.running.determinism import job_seed
from atso.storage import atomic_save_torch, load_torch, make_folder
from atso.strategies.plan import M0, EvaluateJob, TrainJob
from atso.training.trainer import train

if TYPE_CHECKING:
    from atso.running.runner import Runner


def train_volume_model(runner: Runner, job: TrainJob) -> dict[str, Any]:
    """Train a volume model: each view's network on the slices of S and of the job's fused pseudo-labels.

    A network that finished is kept as ``network-<view>.pt`` in the job's folder until the model file
    is written, so a run killed while training the next view resumes without redoing it.
    """
    config = runner.config
    pairs = [
        VolumePair(s.id, s.image, s.mask, False, runner.mask_description(s))  # type: ignore[arg-type]
        for s in runner.split.labeled
    ]
    for fold, labeling in job.pseudo:
        labels = runner.run_dir.labels_dir(labeling)
        for sample in runner.split.reference_folds[fold - 1]:
            pairs.append(VolumePair(sample.id, sample.image, labels / f"{sample.id}{runner.label_suffix}", True))
    seed = job_seed(config.train.seed, job.id)
    torch.manual_seed(seed)
    model = runner.build_network()
    assert isinstance(model, ViewNetworks)
    if job.init is not None:
        model.load_state_dict(load_weights(runner.run_dir.model_path(job.init)))
    elif config.model.pretrained is not None:
        load_pretrained(model, config.model.pretrained)
    settings = runner.training_settings(job)
    job_dir = runner.run_dir.job_dir(job.id)
    make_folder(job_dir)
    losses: list[float] = []
    slices = 0
    started = time.perf_counter()
    for key in model.keys():
        network, finished = model.networks[key], job_dir / f"network-{key}.pt"
        if finished.is_file():
            network.load_state_dict(load_torch(finished))
            continue
        network_seed = job_seed(seed, key)
        torch.manual_seed(network_seed)
        dataset = SliceTrainingDataset(
            pairs, runner.description, config.data.volume, model.views_of(key), config.data.input_size,
            SliceAugmentation(config.train.augmentation(student=job.init is not None)[0], config.train.hflip, runner.description.ignore_index),
            batch_size=config.train.batch_size, seed=network_seed, labeled_share=config.train.labeled_share,
            mix=config.train.mix, mix_probability=config.train.mix_probability,
            strong=SliceIntensityJitter.from_config(config.train.strong),
        )
        slices += len(dataset)
        name = f"{job.id}[{key}]"
        with runner.tensorboard.training(name) if runner.tensorboard else contextlib.nullcontext() as on_log:
            losses += train(
                network, dataset, settings, job_dir / f"state-{key}.pt", name,
                fault_point=f"train:{job.id}:{key}", metadata={"config": config.to_dict()}, on_log=on_log,
            )
        if distributed.is_main():
            atomic_save_torch(finished, {k: v.detach().cpu() for k, v in network.state_dict().items()})
            (job_dir / f"state-{key}.pt").unlink(missing_ok=True)
        distributed.barrier()
    if distributed.is_main():
        save_model(
            runner.run_dir.model_path(job.id),
            model,
            runner.model_info({"job": job.id, "init": job.init, "pseudo": [list(p) for p in job.pseudo]}),
        )
        for key in model.keys():
            (job_dir / f"network-{key}.pt").unlink(missing_ok=True)
    return {
        "model": str(runner.run_dir.model_path(job.id).relative_to(runner.run_dir.path)),
        "training_pairs": len(pairs),
        "training_slices": slices,
        "iterations": settings.iterations,
        "final_loss": losses[-1] if losses else None,
        "seconds_training": round(time.perf_counter() - started, 1),
    }


def evaluate_volumes(runner: Runner, job: EvaluateJob) -> dict[str, Any]:
    """Foreground DSC of the job's models on the test volumes (per case and global), and with M0."""
    if not runner.split.test:
        return {"metric": "dice"}
    groups = {model: [model] for model in job.models}
    if len(job.models) > 1:
        groups["ensemble"] = list(job.models)
    # M0's test predictions serve every later evaluation of this process (agreement with M0):
    # predicting volumes is the slow part of a run on CPUs.
    cached = runner.m0_test_labels
    if M0 not in job.models and len(cached) < len(runner.split.test):
        groups["__m0__"] = [M0]
    names = runner.description.classes
    predictor = runner.predictor(runner.load_models(sorted({m for g in groups.values() for m in g})))
    scores = {group: VolumeScores(names, runner.description.ignore_index) for group in groups if group != "__m0__"}
    agreement = {group: VolumeScores(names, 255) for group in scores}
    for sample, predictions in predictor.predict(runner.split.test, groups, desc=job.id):
        m0 = predictions["__m0__" if "__m0__" in predictions else M0].labels if sample.id not in cached else cached[sample.id]
        cached[sample.id] = m0
        truth = read_label_volume(sample.mask, runner.mask_description(sample), m0.shape).data  # type: ignore[arg-type]
        for group, score in scores.items():
            score.add_volume(predictions[group].labels, truth, sample.id)
            agreement[group].add_volume(predictions[group].labels, m0, sample.id)
    record: dict[str, Any] = {"metric": "dice", "test": {group: s.summary() for group, s in scores.items()}}
    record["agreement_with_m0"] = {group: a.summary()["mean_case_dice"] for group, a in agreement.items()}
    record["test_dice"] = mean_of_defined([record["test"][m]["mean_case_dice"] for m in job.models])
    record["test_global_dice"] = mean_of_defined([record["test"][m]["global_dice"] for m in job.models])
    record["agreement_with_m0_mean"] = mean_of_defined([record["agreement_with_m0"][m] for m in job.models])
    if len(job.models) > 1:
        record["test_ensemble_dice"] = record["test"]["ensemble"]["mean_case_dice"]
    return record


def score_volume_labeling(runner: Runner, labeling: str, previous: str | None) -> dict[str, Any]:
    """DSC of the fused pseudo-label volumes against R's truth (a diagnostic), and how many voxels changed."""
    names, ignore = runner.description.classes, runner.description.ignore_index
    scores, kept_scores = VolumeScores(names, ignore), VolumeScores(names, ignore)
    labels_dir = runner.run_dir.labels_dir(labeling)
    changed = compared = 0
    scored = False
    for sample in runner.split.reference:
        # The labels were written on the scan's grid, and preflight checked the truth against the scan:
        # their shape stands for the scan's, which spares decoding every reference scan again here.
        labels = read_pseudo_label_volume(labels_dir / f"{sample.id}{runner.label_suffix}", len(names), ignore)
        shape = labels.shape
        if sample.mask is not None:
            truth = read_label_volume(sample.mask, runner.mask_description(sample), shape).data
            # Over every voxel: a filtered-out voxel is a miss of its class, not left out of the score.
            scores.add_volume(labels, truth, sample.id, unlabeled=ignore)
            kept_scores.add_volume(labels, np.where(labels == ignore, ignore, truth), sample.id, unlabeled=ignore)
            scored = True
        if previous is not None:
            before = read_pseudo_label_volume(
                runner.run_dir.labels_dir(previous) / f"{sample.id}{runner.label_suffix}", len(names), ignore, shape
            )
            changed += int((before != labels).sum())
            compared += labels.size
    result: dict[str, Any] = {"granularity": "full"}
    if scored:
        summary = scores.summary()
        result["reference"] = summary
        result["reference_dice"] = summary["mean_case_dice"]
        result["reference_global_dice"] = summary["global_dice"]
        if "labeled_fraction" in summary:  # labels were filtered: the kept fraction, and @R on it alone
            result["reference_labeled_fraction"] = summary["labeled_fraction"]
            result["reference_kept_dice"] = kept_scores.summary()["mean_case_dice"]
    if previous is not None and compared:
        result["changed_fraction"] = changed / compared
    return result
