"""The train stage: one model from scratch or ``job.init``, on S plus the job's pseudo-labeled folds.

A model trains part by part (:meth:`atso.modalities.base.Modality.parts`): an image model is one
part; a volume model one network per view. A named part that finished is kept as
``network-<part>.pt`` in the job's folder until the model file is written, so a run killed while
training the next part resumes without redoing it.

With ``teacher_student.reliability`` (ST++) every teacher (and M0, which a later run may label with)
also keeps earlier snapshots, which rank the pseudo-labels it writes, and a student trains on S plus
the reliable share of each of its folds first, then on S plus all of them.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from atso.checkpoints import load_pretrained, load_weights, save_model
from atso.config import Config
from atso.modalities import Part
from atso.inference.reliability import reliable_share
from atso.running.context import RunContext
from atso.runtime import distributed
from atso.runtime.determinism import job_seed
from atso.storage import atomic_save_torch, load_torch, make_folder
from atso.strategies.plan import TrainJob
from atso.training.callbacks import SaveSnapshots, StagedData, snapshot_iterations
from atso.training.losses import LossFunction, segmentation_loss
from atso.training.trainer import Callback, LogTo, Trainer, TrainingSettings


def train(job: TrainJob, context: RunContext) -> dict[str, Any]:
    """Train the job's model and write its model file; return the manifest's outputs."""
    config, run_dir, modality = context.config, context.run_dir, context.modality
    pairs, coarse = training_pairs(job, context)
    reliability = config.teacher_student.reliability
    first_pairs = training_pairs(job, context, reliable_only=True)[0] if reliability.enabled and job.pseudo else None
    seed = job_seed(config.train.seed, job.id)
    torch.manual_seed(seed)
    model = modality.build_network()
    if job.init is not None:
        model.load_state_dict(load_weights(run_dir.model_path(job.init)))
    elif config.model.pretrained is not None:
        load_pretrained(model, config.model.pretrained)
    settings = training_settings(config, job, context.device)
    # Super-class g is trained as target num_classes + g, against the group's summed softmax.
    labels = context.labels
    loss_fn = segmentation_loss(labels.description.num_classes, labels.description.ignore_index, labels.superclass_table) if coarse else None
    make_folder(run_dir.job_dir(job.id))
    parts = modality.parts(model)
    losses: list[float] = []
    examples = iterations_here = 0
    started = time.perf_counter()
    for part in parts:
        part_losses, part_examples, part_iterations = _train_part(job, part, pairs, first_pairs, seed, settings, loss_fn, context)
        losses += part_losses
        examples += part_examples
        iterations_here += part_iterations
    seconds = time.perf_counter() - started
    if distributed.is_main():
        pseudo = [list(p) for p in job.pseudo]
        info = context.model_info({"job": job.id, "init": job.init, "pseudo": pseudo})
        if _keeps_snapshots(job, context):
            _save_snapshots(job, model, parts, settings, context)
        save_model(run_dir.model_path(job.id), model, info)
        for part in parts:
            _state_path(context, job, part).unlink(missing_ok=True)
            if part.key is not None:
                (run_dir.job_dir(job.id) / f"network-{part.key}.pt").unlink(missing_ok=True)
            for k in range(1, reliability.snapshots + 1):
                _part_snapshot(context, job, part, k).unlink(missing_ok=True)
    outputs: dict[str, Any] = {}
    if _keeps_snapshots(job, context):
        outputs["snapshots"] = [
            str(run_dir.snapshot_path(job.id, k).relative_to(run_dir.path)) for k in range(1, reliability.snapshots + 1)
        ]
    if first_pairs is not None:
        outputs["reliable_first"] = {
            "pairs": sum(p.target_is_pseudo for p in first_pairs),
            "of": sum(p.target_is_pseudo for p in pairs),
            "iterations": _switch_iteration(settings.iterations, reliability.first_iterations),
        }
    return {
        "model": str(run_dir.model_path(job.id).relative_to(run_dir.path)),
        "training_pairs": len(pairs),
        "iterations": settings.iterations,
        "final_loss": losses[-1] if losses else None,
        **modality.training_outputs(examples, iterations_here, seconds),
        **outputs,
    }


def training_pairs(job: TrainJob, context: RunContext, reliable_only: bool = False) -> tuple[list[Any], bool]:
    """S with its ground truth, then each pseudo-labeled fold's images with their labels; and whether any is super-class.

    With ``reliable_only``, each fold gives only its ``teacher_student.reliability.share`` of samples
    its labeling scored most stable.
    """
    modality, split, labels = context.modality, context.split, context.labels
    pairs = [
        modality.training_pair(s.id, s.image, s.mask, False, mask_description=labels.mask_description(s))  # type: ignore[arg-type]
        for s in split.labeled
    ]
    coarse = False
    for fold, labeling in job.pseudo:
        labels_dir = context.run_dir.labels_dir(labeling)
        offset = labels.description.num_classes if context.granularity(labeling) == "super" else 0
        coarse = coarse or bool(offset)
        samples = split.reference_folds[fold - 1]
        if reliable_only:
            share = context.config.teacher_student.reliability.share
            chosen = reliable_share(context.run_dir.reliability_path(labeling), [[s.id for s in samples]], share)
            samples = [s for s in samples if s.id in chosen]
        for sample in samples:
            # Only the image of a reference sample travels: its ground truth never reaches training.
            image_only = sample.without_mask()
            target = labels_dir / f"{sample.id}{modality.label_suffix}"
            pairs.append(modality.training_pair(image_only.id, image_only.image, target, True, offset))
    return pairs, coarse


def training_settings(config: Config, job: TrainJob, device: torch.device) -> TrainingSettings:
    """The trainer's settings for a job: M0 trains from scratch, students with their own budget."""
    train, runtime = config.train, config.runtime
    from_scratch = job.init is None
    return TrainingSettings(
        iterations=train.iterations if from_scratch else (train.student_iterations or train.iterations),
        lr=train.lr if from_scratch else (train.student_lr or train.lr),
        momentum=train.momentum,
        weight_decay=train.weight_decay,
        poly_power=train.poly_power,
        checkpoint_every=train.checkpoint_every,
        device=str(device),
        amp=runtime.amp,
        amp_dtype=runtime.amp_dtype,
        channels_last=runtime.channels_last,
        compile=runtime.compile,
        num_workers=runtime.num_workers,
        prefetch_factor=runtime.prefetch_factor,
        quiet=runtime.quiet,
    )


def _state_path(context: RunContext, job: TrainJob, part: Part):
    return context.run_dir.job_dir(job.id) / ("state.pt" if part.key is None else f"state-{part.key}.pt")


def _part_snapshot(context: RunContext, job: TrainJob, part: Part, index: int):
    """A part's weights at its ``index``-th snapshot iteration, kept until the job's snapshot models are written."""
    return context.run_dir.job_dir(job.id) / (f"weights-{index}.pt" if part.key is None else f"weights-{index}-{part.key}.pt")


def _keeps_snapshots(job: TrainJob, context: RunContext) -> bool:
    """Whether the job's model keeps earlier snapshots: with ST++'s selection, if it ever labels."""
    return context.config.teacher_student.reliability.enabled and job.id in context.plan.teachers()


def _save_snapshots(job: TrainJob, model: torch.nn.Module, parts: list[Part], settings: TrainingSettings, context: RunContext) -> None:
    """Write the model at each snapshot (every part at its own), then put the final weights back."""
    final = {key: value.detach().clone() for key, value in model.state_dict().items()}
    iterations = snapshot_iterations(settings.iterations, context.config.teacher_student.reliability.snapshots)
    for k, iteration in enumerate(iterations, start=1):
        for part in parts:
            part.network.load_state_dict(load_torch(_part_snapshot(context, job, part, k)))
        info = context.model_info({"job": job.id, "snapshot": k, "iteration": iteration})
        save_model(context.run_dir.snapshot_path(job.id, k), model, info)
    model.load_state_dict(final)


def _switch_iteration(iterations: int, share: float) -> int:
    """Where a student turns from the reliable share to all of R; at ``iterations`` (share 1) it never does."""
    return min(iterations, max(1, round(iterations * share)))


def _callbacks(
    job: TrainJob, part: Part, first_pairs: list[Any] | None, seed: int, settings: TrainingSettings, context: RunContext
) -> list[Callback]:
    """ST++'s additions to a part's training: snapshots to rank its labels by, the reliable share first."""
    reliability = context.config.teacher_student.reliability
    callbacks: list[Callback] = []
    if _keeps_snapshots(job, context):
        iterations = snapshot_iterations(settings.iterations, reliability.snapshots)
        callbacks.append(SaveSnapshots([(it, _part_snapshot(context, job, part, k)) for k, it in enumerate(iterations, start=1)]))
    if first_pairs is not None:
        first = context.modality.training_dataset(first_pairs, student=True, seed=seed, part=part)
        callbacks.append(StagedData(first, _switch_iteration(settings.iterations, reliability.first_iterations)))
    return callbacks


def _train_part(
    job: TrainJob, part: Part, pairs: list[Any], first_pairs: list[Any] | None, seed: int,
    settings: TrainingSettings, loss_fn: LossFunction | None, context: RunContext,
) -> tuple[list[float], int, int]:
    """Train one part; return its losses, its training examples and the iterations this process ran."""
    finished = context.run_dir.job_dir(job.id) / f"network-{part.key}.pt"
    name, fault_point = job.id, f"train:{job.id}"
    if part.key is not None:
        if finished.is_file():
            part.network.load_state_dict(load_torch(finished))
            return [], 0, 0
        seed = job_seed(seed, part.key)  # each part its own stream
        torch.manual_seed(seed)
        name, fault_point = f"{job.id}[{part.key}]", f"train:{job.id}:{part.key}"
    dataset = context.modality.training_dataset(pairs, student=job.init is not None, seed=seed, part=part)
    state_path = _state_path(context, job, part)
    with context.training_log(name) as on_log:
        trainer = Trainer(
            part.network, dataset, settings, state_path, name, loss_fn=loss_fn,
            callbacks=[*([LogTo(on_log)] if on_log is not None else []), *_callbacks(job, part, first_pairs, seed, settings, context)],
            fault_point=fault_point,
            metadata={"config": context.config.to_dict()},
        )
        losses = trainer.run()
    if part.key is not None:
        if distributed.is_main():
            atomic_save_torch(finished, {k: v.detach().cpu() for k, v in part.network.state_dict().items()})
            state_path.unlink(missing_ok=True)
        distributed.barrier()
    return losses, len(dataset), settings.iterations - trainer.start
