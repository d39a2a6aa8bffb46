"""The train stage: one model from scratch or ``job.init``, on S plus the job's pseudo-labeled folds.

A model trains part by part (:meth:`atso.modalities.base.Modality.parts`): an image model is one
part; a volume model one network per view. A named part that finished is kept as
``network-<part>.pt`` in the job's folder until the model file is written, so a run killed while
training the next part resumes without redoing it.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from atso.checkpoints import load_pretrained, load_weights, save_model
from atso.config import Config
from atso.modalities import Part
from atso.running.context import RunContext
from atso.runtime import distributed
from atso.runtime.determinism import job_seed
from atso.storage import atomic_save_torch, load_torch, make_folder
from atso.strategies.plan import TrainJob
from atso.training.losses import LossFunction, segmentation_loss
from atso.training.trainer import LogTo, Trainer, TrainingSettings


def train(job: TrainJob, context: RunContext) -> dict[str, Any]:
    """Train the job's model and write its model file; return the manifest's outputs."""
    config, run_dir, modality = context.config, context.run_dir, context.modality
    pairs, coarse = training_pairs(job, context)
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
        part_losses, part_examples, part_iterations = _train_part(job, part, pairs, seed, settings, loss_fn, context)
        losses += part_losses
        examples += part_examples
        iterations_here += part_iterations
    seconds = time.perf_counter() - started
    if distributed.is_main():
        pseudo = [list(p) for p in job.pseudo]
        save_model(run_dir.model_path(job.id), model, context.model_info({"job": job.id, "init": job.init, "pseudo": pseudo}))
        for part in parts:
            _state_path(context, job, part).unlink(missing_ok=True)
            if part.key is not None:
                (run_dir.job_dir(job.id) / f"network-{part.key}.pt").unlink(missing_ok=True)
    return {
        "model": str(run_dir.model_path(job.id).relative_to(run_dir.path)),
        "training_pairs": len(pairs),
        "iterations": settings.iterations,
        "final_loss": losses[-1] if losses else None,
        **modality.training_outputs(examples, iterations_here, seconds),
    }


def training_pairs(job: TrainJob, context: RunContext) -> tuple[list[Any], bool]:
    """S with its ground truth, then each pseudo-labeled fold's images with their labels; and whether any is super-class."""
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
        for sample in split.reference_folds[fold - 1]:
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


def _train_part(
    job: TrainJob, part: Part, pairs: list[Any], seed: int, settings: TrainingSettings,
    loss_fn: LossFunction | None, context: RunContext,
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
            callbacks=[LogTo(on_log)] if on_log is not None else [], fault_point=fault_point,
            metadata={"config": context.config.to_dict()},
        )
        losses = trainer.run()
    if part.key is not None:
        if distributed.is_main():
            atomic_save_torch(finished, {k: v.detach().cpu() for k, v in part.network.state_dict().items()})
            state_path.unlink(missing_ok=True)
        distributed.barrier()
    return losses, len(dataset), settings.iterations - trainer.start
