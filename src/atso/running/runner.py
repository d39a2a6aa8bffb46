"""Execute a plan job by job against a run directory, skipping finished jobs and resuming the rest."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from atso.checkpoints import ModelInfo, load_model, load_pretrained, load_weights, save_model
from atso.config import Config
from atso.data.datasets import TrainingDataset, TrainingPair
from atso.data.description import DatasetDescription, load_description
from atso.data.images import read_label_map, read_mask
from atso.data.samples import Sample, read_list_file, write_list_file
from atso.data.splits import Split, build_split
from atso.data.transforms import Augmentation, StrongPhotometric
from atso.errors import AtsoError
from atso.evaluation.metrics import SegmentationScores, mean_of_defined
from atso.inference.labeler import class_balanced_thresholds, label_samples
from atso.inference.predictor import Predictor
from atso.inference.volume_predictor import VolumePredictor
from atso.models import build_model
from atso.models.views import build_view_networks
from atso.reporting.tensorboard import TensorBoardLog
from atso.running import distributed, volume_jobs
from atso.running.determinism import deterministic_algorithms, job_seed
from atso.running.faults import maybe_crash
from atso.running.run_dir import RunDirectory
from atso.running.scheduler import run_parallel, worker_devices
from atso.storage import atomic_write_json, atomic_write_text, load_torch, make_folder, read_json
from atso.strategies.plan import M0, EvaluateJob, Job, LabelJob, Plan, TrainJob
from atso.training.losses import segmentation_loss
from atso.training.trainer import TrainingSettings, resolve_device, train

Log = Callable[[str], None]


@dataclass
class Runner:
    """Runs a plan. Services (training, labeling, scoring) never learn which strategy called them."""

    config: Config
    run_dir: RunDirectory
    plan: Plan
    log: Log = print

    def __post_init__(self) -> None:
        self.description: DatasetDescription = load_description(self.config.data.description)
        self.device = resolve_device(self.config.runtime.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.config.runtime.cudnn_benchmark
        self.is_volume = self.config.data.kind == "volume"
        # Pseudo-labels are label maps like the ground truth: PNG for images, fused NIfTI for volumes.
        self.label_suffix = ".nii.gz" if self.is_volume else ".png"
        self._split: Split | None = None
        self._label_spaces: dict[str, DatasetDescription] = {}
        self.m0_test_labels: dict[str, np.ndarray] = {}  # M0's test predictions, kept per process for volumes
        # Built up front, so a missing tensorboard package fails before any training starts.
        wanted = self.config.runtime.tensorboard and distributed.is_main()
        self.tensorboard = TensorBoardLog(self.run_dir.tensorboard_dir) if wanted else None

    # ----- label spaces ---------------------------------------------------------------------------------
    @property
    def superclass_table(self) -> np.ndarray | None:
        """Class -> super-class, when the description groups its classes."""
        return self.description.superclass_table() if self.description.superclasses else None

    def mask_description(self, sample: Sample) -> DatasetDescription:
        """The description a sample's mask is read with: its source's own, or the run's."""
        if sample.label_space is None:
            return self.description
        if sample.label_space not in self._label_spaces:
            own = load_description(sample.label_space)
            if own.classes != self.description.classes:
                raise AtsoError(
                    f"{sample.label_space}: its classes differ from the run's ('{self.description.name}'); "
                    "list the run's classes and map this dataset's raw values onto them with 'remap' and 'unmapped: ignore'"
                )
            self._label_spaces[sample.label_space] = own
        return self._label_spaces[sample.label_space]

    def to_superclasses(self, labels: np.ndarray) -> np.ndarray:
        """Full-class labels (with ignore) as super-class labels (with ignore)."""
        table = self.superclass_table
        ignore = self.description.ignore_index
        return np.where(labels == ignore, ignore, table[np.minimum(labels, len(table) - 1)]).astype(np.uint8)

    def granularity(self, labeling: str) -> str:
        job = self.plan.job(labeling)
        return job.granularity if isinstance(job, LabelJob) else "full"

    # ----- set-up -------------------------------------------------------------------------------------
    @property
    def split(self) -> Split:
        """The run's S, reference folds and E, listed and checked once."""
        if self._split is None:
            split = build_split(self.config)
            if not split.labeled:
                where = self.config.data.labeled_list or "data"
                raise AtsoError(
                    f"{where}: the labeled set is empty; set data.labeled_count or list samples in data.labeled_list"
                )
            if self.plan.generations > 0 and not split.reference:
                raise AtsoError(
                    "data: the reference set is empty (every training sample is labeled); "
                    "lower data.labeled_count or add data.unlabeled sources"
                )
            self._split = split
        return self._split

    def write_split(self) -> None:
        """Record the split as list files; refuse to go on if the data no longer gives the recorded one."""
        split = self.split
        files = {"labeled.txt": split.labeled, "test.txt": split.test}
        files.update({f"reference_fold_{k}.txt": fold for k, fold in enumerate(split.reference_folds, start=1)})
        for name, samples in files.items():
            path = self.run_dir.splits / name
            if path.is_file():
                recorded = [s.image.resolve() for s in read_list_file(path)]
                if recorded != [s.image.resolve() for s in samples]:
                    raise AtsoError(f"{path}: the data no longer gives this split; use a new --out directory")
            else:
                write_list_file(path, samples)

    def model_info(self, extra: dict[str, Any]) -> ModelInfo:
        if self.is_volume:  # how to cut and fuse, so a model file predicts volumes on its own
            extra = {**extra, "volume": self.config.data.volume.model_dump(mode="json")}
        return ModelInfo(
            name=self.config.model.name,
            options=dict(self.config.model.options),
            description=self.description,
            input_size=tuple(self.config.data.input_size),
            extra=extra,
        )

    # ----- execution ----------------------------------------------------------------------------------
    def run(self, only: str | None = None) -> None:
        """Run every unfinished job in plan order (or just ``only``).

        With ``runtime.workers`` or ``runtime.devices``, the jobs whose inputs are finished run at once,
        each in its own process (:mod:`atso.running.scheduler`). Under torchrun every process takes part
        in every job (:mod:`atso.running.distributed`) and rank 0 writes the run directory's files.
        """
        if distributed.is_main():
            self.write_split()
            atomic_write_text(self.run_dir.path / "plan.txt", self.plan.format() + "\n")
        jobs = [self.plan.job(only)] if only else list(self.plan.jobs)
        devices = worker_devices(self.config.runtime)
        if only is None and len(devices) > 1:
            if distributed.is_distributed():
                raise AtsoError(
                    "runtime.workers / runtime.devices: parallel jobs do not combine with torchrun; use one or the other"
                )
            run_parallel(self.run_dir, jobs, devices, log=self.log)
        else:
            for job in jobs:
                self.run_job(job)
        if distributed.is_main():
            self.write_metrics()

    def run_job(self, job: Job) -> None:
        """Run one job unless it is finished; refuse it while its inputs are unfinished or another process runs it."""
        # Rank 0 holds the job's lock for all ranks. While it is held no other process can finish the
        # job, so every rank reads the same answer from the manifest.
        with self.run_dir.job_lock(job.id) if distributed.is_main() else contextlib.nullcontext():
            distributed.barrier()
            if self.run_dir.is_finished(job.id):
                return
            missing = [needed for needed in job.inputs if not self.run_dir.is_finished(needed)]
            if missing:
                raise AtsoError(f"job {job.id}: its inputs are not finished yet ({', '.join(missing)}); run those first")
            started = time.perf_counter()
            with deterministic_algorithms(self.config.runtime.deterministic, job=job.id):
                outputs = self.execute(job)
            elapsed = time.perf_counter() - started
            if distributed.is_main():
                self.run_dir.mark_finished(job.id, outputs, elapsed)
                self.log(f"finished {job.id} ({job.kind}) in {elapsed:.1f}s{_summary_suffix(outputs)}")
            distributed.barrier()
        maybe_crash(f"after:{job.id}")

    def execute(self, job: Job) -> dict[str, Any]:
        if isinstance(job, TrainJob):
            return self.train(job)
        if isinstance(job, LabelJob):
            return self.label(job)
        return self.evaluate(job) if distributed.is_main() else {}  # scoring is quick: rank 0 alone

    def build_network(self) -> torch.nn.Module:
        """The untrained model: one network, or for volumes the networks of the views."""
        config = self.config
        if self.is_volume:
            volume = config.data.volume
            return build_view_networks(
                config.model.name, self.description.num_classes, 2 * volume.context + 1,
                volume.views, volume.shared_network, **config.model.options,
            )
        return build_model(config.model.name, self.description.num_classes, **config.model.options)

    def train(self, job: TrainJob) -> dict[str, Any]:
        """Train one model: from scratch or ``job.init``, on S plus the job's pseudo-labeled folds."""
        if self.is_volume:
            return volume_jobs.train_volume_model(self, job)
        config = self.config
        pairs = [
            TrainingPair(s.id, s.image, s.mask, False, mask_description=self.mask_description(s))  # type: ignore[arg-type]
            for s in self.split.labeled
        ]
        coarse = False
        for fold, labeling in job.pseudo:
            labels = self.run_dir.labels_dir(labeling)
            # Super-class g is trained as target num_classes + g, against the group's summed softmax.
            offset = self.description.num_classes if self.granularity(labeling) == "super" else 0
            coarse = coarse or bool(offset)
            for sample in self.split.reference_folds[fold - 1]:
                # Only the image of a reference sample travels: its ground truth never reaches training.
                image_only = sample.without_mask()
                pairs.append(TrainingPair(image_only.id, image_only.image, labels / f"{sample.id}.png", True, offset))
        seed = job_seed(config.train.seed, job.id)
        torch.manual_seed(seed)
        model = self.build_network()
        if job.init is not None:
            model.load_state_dict(load_weights(self.run_dir.model_path(job.init)))
        elif config.model.pretrained is not None:
            load_pretrained(model, config.model.pretrained)
        settings = self.training_settings(job)
        scale, blur = config.train.augmentation(student=job.init is not None)
        dataset = TrainingDataset(
            pairs,
            self.description,
            config.data.input_size,
            Augmentation(scale, config.train.hflip, blur, self.description.ignore_index),
            batch_size=config.train.batch_size,
            seed=seed,
            labeled_share=config.train.labeled_share,
            mix=config.train.mix,
            mix_probability=config.train.mix_probability,
            strong=StrongPhotometric.from_config(config.train.strong),
        )
        job_dir = self.run_dir.job_dir(job.id)
        make_folder(job_dir)
        state_path = job_dir / "state.pt"
        resumed_at = int(load_torch(state_path)["iteration"]) if state_path.is_file() else 0
        started = time.perf_counter()
        with self.tensorboard.training(job.id) if self.tensorboard else contextlib.nullcontext() as on_log:
            losses = train(
                model, dataset, settings, state_path, job.id,
                fault_point=f"train:{job.id}", metadata={"config": config.to_dict()}, on_log=on_log,
                loss_fn=segmentation_loss(
                    self.description.num_classes, self.description.ignore_index, self.superclass_table
                ) if coarse else None,
            )
        run_here = settings.iterations - resumed_at  # iterations trained by this process, not before a crash
        images_per_second = run_here * config.train.batch_size / max(time.perf_counter() - started, 1e-9)
        if distributed.is_main():
            save_model(
                self.run_dir.model_path(job.id),
                model,
                self.model_info({"job": job.id, "init": job.init, "pseudo": [list(p) for p in job.pseudo]}),
            )
            state_path.unlink(missing_ok=True)
        return {
            "model": str(self.run_dir.model_path(job.id).relative_to(self.run_dir.path)),
            "training_pairs": len(pairs),
            "iterations": settings.iterations,
            "final_loss": losses[-1] if losses else None,
            "images_per_second": round(images_per_second, 2),
        }

    def training_settings(self, job: TrainJob) -> TrainingSettings:
        """The trainer's settings for a job: M0 trains from scratch, students with their own budget."""
        config = self.config
        from_scratch = job.init is None
        iterations = config.train.iterations if from_scratch else (config.train.student_iterations or config.train.iterations)
        lr = config.train.lr if from_scratch else (config.train.student_lr or config.train.lr)
        return TrainingSettings(
            iterations=iterations,
            lr=lr,
            momentum=config.train.momentum,
            weight_decay=config.train.weight_decay,
            poly_power=config.train.poly_power,
            checkpoint_every=config.train.checkpoint_every,
            device=str(self.device),
            amp=config.runtime.amp,
            amp_dtype=config.runtime.amp_dtype,
            channels_last=config.runtime.channels_last,
            num_workers=config.runtime.num_workers,
            prefetch_factor=config.runtime.prefetch_factor,
            quiet=config.runtime.quiet,
        )

    def load_models(self, job_ids: list[str]) -> dict[str, torch.nn.Module]:
        return {job_id: load_model(self.run_dir.model_path(job_id), self.device)[0] for job_id in job_ids}

    def predictor(self, models: dict[str, torch.nn.Module], labeling: bool = False) -> Predictor | VolumePredictor:
        """A predictor for scoring, or for ``labeling`` (which may add a flip of its own: a better teacher)."""
        flip = self.config.evaluation.flip or (labeling and self.config.teacher_student.label_flip)
        runtime = self.config.runtime
        options = dict(
            batch_size=self.config.evaluation.batch_size, flip=flip, amp=runtime.amp, amp_dtype=runtime.amp_dtype, quiet=runtime.quiet
        )
        if self.is_volume:
            return VolumePredictor(models, self.config.data.volume, self.config.data.input_size, self.device, **options)  # type: ignore[arg-type]
        return Predictor(
            models, self.config.data.input_size, self.device,
            num_workers=runtime.num_workers, channels_last=runtime.channels_last, **options,  # type: ignore[arg-type]
        )

    def label(self, job: LabelJob) -> dict[str, Any]:
        """Pseudo-label each reference fold with the teachers the plan names for it."""
        predictor = self.predictor(self.load_models(list(job.inputs)), labeling=True)
        out_dir = self.run_dir.labels_dir(job.id)
        coarse = job.granularity == "super"
        if coarse and self.is_volume:
            raise AtsoError("teacher_student.pseudo_labels: 'super' is for 2D images; volumes use full-class labels")
        if coarse and self.superclass_table is None:
            raise AtsoError(
                f"teacher_student.pseudo_labels: 'super' needs 'superclasses' in the dataset description '{self.description.name}'"
            )
        space = self.description.superclass_description() if coarse else self.description
        palette = space.color_palette()
        selection = self.config.teacher_student
        superclass_table = self.superclass_table if coarse else None
        thresholds: dict[str, list[float]] = {}
        if not self.split.reference:  # everything labeled (a full-supervision bound): nothing to pseudo-label
            return {"labels": str(out_dir.relative_to(self.run_dir.path)), "samples": 0}
        for fold, teachers in job.teachers:
            # Under torchrun each rank labels its share; the files are per sample, so they merge by name.
            samples = distributed.shard([s.without_mask() for s in self.split.reference_folds[fold - 1]])
            threshold: float | np.ndarray | None = selection.confidence_threshold
            if selection.class_balanced_keep is not None:
                # Counted over the whole fold on every (re)run, so a resumed labeling uses the same thresholds.
                threshold = class_balanced_thresholds(
                    predictor, samples, list(teachers), space.num_classes, selection.class_balanced_keep,
                    desc=f"{job.id} R{fold} thresholds", superclass_table=superclass_table,
                )
                thresholds[str(fold)] = [round(float(t), 4) for t in threshold]
            label_samples(
                predictor,
                samples,
                list(teachers),
                out_dir,
                palette,
                self.description.ignore_index,
                threshold,
                fault_point=f"label:{job.id}",
                desc=f"{job.id} R{fold}",
                superclass_table=superclass_table,
                suffix=self.label_suffix,
            )
        outputs: dict[str, Any] = {"labels": str(out_dir.relative_to(self.run_dir.path)), "samples": len(self.split.reference)}
        if thresholds:
            outputs["class_thresholds"] = thresholds
        return outputs

    def evaluate(self, job: EvaluateJob) -> dict[str, Any]:
        """@E of the job's models (each, and their ensemble), agreement with M0, @R of its labeling."""
        record: dict[str, Any] = {"job": job.id, "strategy": job.strategy, "generation": job.generation}
        names = self.description.classes
        if self.is_volume:
            record.update(volume_jobs.evaluate_volumes(self, job))
        elif self.split.test:
            groups = {model: [model] for model in job.models}
            if len(job.models) > 1:
                groups["ensemble"] = list(job.models)
            groups["__m0__"] = [M0]
            predictor = self.predictor(self.load_models(sorted(set(job.models) | {M0})))
            scores = {group: SegmentationScores(names, self.description.ignore_index) for group in groups}
            agreement = {group: SegmentationScores(names, 255) for group in groups if group != "__m0__"}
            coarse_names = list(self.description.superclasses or {})
            coarse_scores = (
                {group: SegmentationScores(coarse_names, self.description.ignore_index) for group in groups}
                if coarse_names else {"__m0__": None}
            )
            for sample, predictions in predictor.predict(self.split.test, groups, desc=job.id):
                shape = predictions["__m0__"].labels.shape
                truth = read_mask(sample.mask, self.mask_description(sample), expected_size=shape)  # type: ignore[arg-type]
                for group, prediction in predictions.items():
                    scores[group].add_case(prediction.labels, truth, sample.id)
                    if coarse_names:
                        coarse_scores[group].add_case(
                            self.to_superclasses(prediction.labels), self.to_superclasses(truth), sample.id
                        )
                    if group in agreement:
                        agreement[group].add_case(prediction.labels, predictions["__m0__"].labels, sample.id)
            del scores["__m0__"], coarse_scores["__m0__"]
            record["test"] = {group: _compact(s.summary()) for group, s in scores.items()}
            if coarse_names:
                record["test_super"] = {group: _compact(s.summary()) for group, s in coarse_scores.items()}
                record["test_super_miou"] = mean_of_defined([record["test_super"][m]["miou"] for m in job.models])
            record["agreement_with_m0"] = {group: a.summary()["miou"] for group, a in agreement.items()}
            # A generation's headline is the mean over its students, each a single model like the
            # other strategies' students; the ensemble is reported beside it.
            record["test_miou"] = mean_of_defined([record["test"][m]["miou"] for m in job.models])
            record["test_mean_dice"] = mean_of_defined([record["test"][m]["mean_case_dice"] for m in job.models])
            record["agreement_with_m0_mean"] = mean_of_defined([record["agreement_with_m0"][m] for m in job.models])
            if len(job.models) > 1:
                record["test_ensemble_miou"] = record["test"]["ensemble"]["miou"]
        if job.labeling is not None:
            record.update(self._score_labeling(job.labeling, job.previous_labeling))
        atomic_write_json(self.run_dir.metrics_file(job.id), record)
        if self.tensorboard is not None:
            self.tensorboard.evaluation(record, list(self.plan.strategies), self.plan.generations)
        return {"metrics": str(self.run_dir.metrics_file(job.id).relative_to(self.run_dir.path)),
                "test_miou": record.get("test_miou"), "reference_miou": record.get("reference_miou"),
                "test_dice": record.get("test_dice"), "reference_dice": record.get("reference_dice")}

    def _score_labeling(self, labeling: str, previous: str | None) -> dict[str, Any]:
        """Pseudo-label accuracy against R's truth: a diagnostic that never feeds training."""
        if self.is_volume:
            return volume_jobs.score_volume_labeling(self, labeling, previous)
        names = self.description.classes
        ignore = self.description.ignore_index
        coarse = self.granularity(labeling) == "super"
        coarse_names = list(self.description.superclasses or {})
        scores, kept_scores = SegmentationScores(names, ignore), SegmentationScores(names, ignore)
        coarse_scores = SegmentationScores(coarse_names, ignore) if coarse_names else None
        changed = compared = 0
        labels_dir = self.run_dir.labels_dir(labeling)
        scored = False
        for sample in self.split.reference:
            labels = read_label_map(labels_dir / f"{sample.id}.png", len(names), ignore)
            if sample.mask is not None:
                truth = read_mask(sample.mask, self.mask_description(sample), expected_size=labels.shape)
                # Over every pixel: a filtered-out pixel is a miss of its class, not left out of the score.
                if not coarse:
                    scores.add_case(labels, truth, sample.id, unlabeled=ignore)
                    kept_scores.add_case(labels, np.where(labels == ignore, ignore, truth), sample.id, unlabeled=ignore)
                if coarse_scores is not None:
                    coarse_labels = labels if coarse else self.to_superclasses(labels)
                    coarse_scores.add_case(coarse_labels, self.to_superclasses(truth), sample.id, unlabeled=ignore)
                scored = True
            if previous is not None:
                before = read_label_map(self.run_dir.labels_dir(previous) / f"{sample.id}.png", len(names), ignore)
                changed += int((before != labels).sum())
                compared += labels.size
        result: dict[str, Any] = {}
        if scored and not coarse:
            summary = scores.summary()
            result["reference"] = _compact(summary)
            result["reference_miou"] = summary["miou"]
            result["reference_mean_dice"] = summary["mean_case_dice"]
            if "labeled_fraction" in summary:  # labels were filtered: the kept fraction, and @R on it alone
                result["reference_labeled_fraction"] = summary["labeled_fraction"]
                result["reference_kept_miou"] = kept_scores.summary()["miou"]
        if scored and coarse_scores is not None:
            summary = coarse_scores.summary()
            result["reference_super"] = _compact(summary)
            result["reference_super_miou"] = summary["miou"]
        result["granularity"] = "super" if coarse else "full"
        if previous is not None and compared:
            result["changed_fraction"] = changed / compared
        return result

    # ----- results ------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Metrics of the finished evaluation jobs, in plan order."""
        out = []
        for job in self.plan.jobs:
            path = self.run_dir.metrics_file(job.id)
            if isinstance(job, EvaluateJob) and self.run_dir.is_finished(job.id) and path.is_file():
                out.append(read_json(path))
        return out

    def write_metrics(self) -> None:
        # Under the run directory's lock, so of two job processes the last writer sees both jobs finished.
        with self.run_dir.locked():
            self.run_dir.write_metrics_lines(self.records())



def _compact(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without the per-case list (kept small for metrics.jsonl)."""
    return {key: value for key, value in summary.items() if key != "cases"}


def _summary_suffix(outputs: dict[str, Any]) -> str:
    parts = []
    for key in ("final_loss", "images_per_second", "test_miou", "reference_miou", "test_dice", "reference_dice"):
        value = outputs.get(key)
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
    return (": " + ", ".join(parts)) if parts else ""
