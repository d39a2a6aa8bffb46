"""The Python API: what the CLI calls, usable from notebooks and scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from atso.checkpoints import check_pretrained, load_model
from atso.config import Config, VolumeConfig
from atso.data.description import DatasetDescription
from atso.data.images import read_image, read_mask, overlay, verify_image, write_label_png, write_rgb_png
from atso.data.samples import Sample
from atso.data.volumes import read_label_volume, read_volume, write_volume
from atso.errors import AtsoError
from atso.evaluation.metrics import SegmentationScores
from atso.evaluation.volume_metrics import VolumeScores
from atso.inference.predictor import Predictor
from atso.inference.volume_predictor import VolumePredictor
from atso.models import build_model
from atso.reporting.tables import diagnostics_table, generation_table
from atso.running import distributed
from atso.running.run_dir import RunDirectory
from atso.running.runner import Runner
from atso.strategies.plan import Plan, build_compare_plan, build_plan
from atso.training.trainer import resolve_device


def make_plan(config: Config, compare: bool = False) -> Plan:
    """The plan a config asks for (one strategy, or all four for a comparison)."""
    ts = config.teacher_student
    if compare:
        return build_compare_plan(
            ts.generations, ts.folds, ts.final_labels,
            strategies=tuple(ts.compare_strategies), granularities=tuple(ts.compare_pseudo_labels),
            super_to_full=ts.super_to_full,
        )
    return build_plan(ts.strategy, ts.generations, ts.folds, ts.final_labels, ts.pseudo_labels, ts.super_to_full)


def preflight(runner: Runner) -> None:
    """Check every sample once, so bad input fails before any training starts, not hours into a run.

    Labeled and test samples are decoded fully; reference images verified whole (cheaply for PNG),
    and their masks, which only serve the @R diagnostic, fully. The network is built once, so an
    unknown model, option or value fails here too.
    """
    description = runner.description
    config = runner.config
    if runner.is_volume:
        _preflight_volumes(runner)
        return
    check_pretrained(config.model.pretrained, build_model(config.model.name, description.num_classes, **config.model.options))
    split = runner.split
    for sample in split.labeled + split.test:
        image = read_image(sample.image)
        read_mask(sample.mask, runner.mask_description(sample), expected_size=image.shape[:2])  # type: ignore[arg-type]
    for sample in split.reference:
        size = verify_image(sample.image)
        if sample.mask is not None:
            read_mask(sample.mask, runner.mask_description(sample), expected_size=size)
    if config.teacher_student.pseudo_labels == "super" or "super" in config.teacher_student.compare_pseudo_labels:
        if not description.superclasses:
            raise AtsoError(
                f"teacher_student.pseudo_labels: 'super' needs 'superclasses' in the dataset description '{description.name}'"
            )


def _preflight_volumes(runner: Runner) -> None:
    """Volumes: every scan read fully (they are few and large), each label checked against its scan's grid."""
    check_pretrained(runner.config.model.pretrained, runner.build_network())
    if runner.config.teacher_student.pseudo_labels == "super" or "super" in runner.config.teacher_student.compare_pseudo_labels:
        raise AtsoError("teacher_student.pseudo_labels: 'super' is for 2D images; volumes use full-class labels")
    split = runner.split
    for sample in split.labeled + split.test + split.reference:
        shape = read_volume(sample.image)  # the grid: read_label_volume checks shape and affine
        if sample.mask is not None:
            read_label_volume(sample.mask, runner.mask_description(sample), shape)


def run(
    config: Config,
    out: str | Path,
    compare: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
    report: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a strategy, or a comparison of all four, in ``out``; return the results.

    With ``report``, ``out/report/`` is written at the end; a report that fails to draw is logged, never
    fatal: the run's results stand, and ``atso report`` rebuilds it.

    Under torchrun (``torchrun --nproc_per_node N -m atso run ...``) every process calls this; they
    train and label together, and rank 0 alone checks the data, writes files, logs and reports.

    Raises:
        AtsoError: bad data or config, or ``out`` holds a run made with another config.
    """
    plan = make_plan(config, compare)
    run_dir = RunDirectory(out)
    with distributed.session(config.runtime.device):
        main = distributed.is_main()
        if not main:  # one voice and one set of progress bars per run
            log = _silent
            config = config.model_copy(update={"runtime": config.runtime.model_copy(update={"quiet": True})})
        runner = Runner(config, run_dir, plan, log=log)
        if main:
            preflight(runner)  # bad data fails before the run directory is touched
            run_dir.prepare(config, compare=compare, force=force)
        distributed.barrier()
        runner.run()
    records = runner.records()
    strategies = list(plan.strategies)
    report_path = None
    if report and main:
        try:
            report_path = str(build_report(run_dir.path, log=log))
        except Exception as exc:  # drawing is a by-product: never lose a finished run to it
            log(f"report: not written ({exc.__class__.__name__}: {exc}); rebuild it with 'atso report {run_dir.path}'")
    return {
        "run_dir": str(run_dir.path),
        "report": report_path,
        "records": records,
        "table": generation_table(records, strategies),
        "super_table": (
            generation_table(records, strategies, metric="super_miou")
            if any(r.get("granularity") == "super" for r in records) else None
        ),
        "diagnostics": diagnostics_table(records, strategies),
        "final_models": {s: [str(run_dir.model_path(m)) for m in models] for s, models in plan.final_models().items()},
    }


def build_report(
    run_dir: str | Path, cases: bool = True, log: Callable[[str], None] = print, quiet: bool | None = None
) -> Path:
    """Write ``run_dir/report/index.html`` and ``summary.md`` from what the run has finished; return the HTML path.

    Raises:
        AtsoError: ``run_dir`` is not a run directory.
    """
    from atso.reporting.report import write_report  # loaded only when a report is drawn

    return write_report(run_dir, cases=cases, log=log, quiet=quiet)


def _silent(line: str) -> None:
    """A log that drops its lines (the ranks of a distributed run other than rank 0)."""


def run_job(
    run_dir: str | Path,
    job_id: str,
    log: Callable[[str], None] = print,
    device: str | None = None,
    quiet: bool = False,
) -> None:
    """Run one job of an existing run directory (for schedulers that spread jobs over machines).

    Args:
        device: overrides ``runtime.device`` of the saved config (e.g. ``cuda:1``).
        quiet: no progress bars.

    Raises:
        AtsoError: the job is unknown, its inputs are not finished, or another process is running it.
    """
    directory = RunDirectory(run_dir)
    config = directory.load_config()
    if device is not None:
        config.runtime.device = device
    if quiet or not distributed.is_main():
        config.runtime.quiet = True
    plan = make_plan(config, compare=directory.is_compare())
    try:
        plan.job(job_id)
    except KeyError:
        known = ", ".join(job.id for job in plan.jobs)
        raise AtsoError(f"job '{job_id}' is not in the plan of {run_dir}; known jobs: {known}") from None
    with distributed.session(config.runtime.device):
        Runner(config, directory, plan, log=log if distributed.is_main() else _silent).run(only=job_id)


def evaluate_checkpoint(
    checkpoint: str | Path,
    samples: list[Sample],
    description: DatasetDescription | None = None,
    input_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    device: str = "auto",
) -> dict[str, Any]:
    """Score a model file on samples with masks; predictions are resized back to each image's size."""
    torch_device = resolve_device(device)
    model, info = load_model(checkpoint, torch_device)
    description = description or info.description
    if info.extra.get("volume"):
        return _evaluate_volume_model(model, info, samples, description, batch_size, torch_device)
    if description.num_classes != info.description.num_classes:
        raise AtsoError(
            f"{checkpoint}: model predicts {info.description.num_classes} classes but the description has "
            f"{description.num_classes}; pass the description the model was trained with"
        )
    predictor = Predictor({"model": model}, input_size or info.input_size, torch_device, batch_size=batch_size)
    scores = SegmentationScores(description.classes, description.ignore_index)
    for sample, predictions in predictor.predict(samples, {"model": ["model"]}):
        labels = predictions["model"].labels
        truth = read_mask(sample.mask, description, expected_size=labels.shape)  # type: ignore[arg-type]
        scores.add_case(labels, truth, sample.id)
    return scores.summary()


def predict_folder(
    checkpoint: str | Path,
    samples: list[Sample],
    output: str | Path,
    overlays: bool = False,
    batch_size: int = 8,
    device: str = "auto",
) -> list[Path]:
    """Write a class-index PNG with a palette per image, at the image's own size."""
    torch_device = resolve_device(device)
    model, info = load_model(checkpoint, torch_device)
    if info.extra.get("volume"):
        predictor = _volume_predictor(model, info, batch_size, torch_device)
        return [
            write_volume(Path(output) / f"{sample.id}.nii.gz", predictions["model"].labels, like=predictions["model"].grid)
            for sample, predictions in predictor.predict(samples, {"model": ["model"]})
        ]
    palette = info.description.color_palette()
    predictor = Predictor({"model": model}, info.input_size, torch_device, batch_size=batch_size)
    output = Path(output)
    written = []
    for sample, predictions in predictor.predict(samples, {"model": ["model"]}):
        labels = predictions["model"].labels
        written.append(write_label_png(output / f"{sample.id}.png", labels, palette, info.description.ignore_index))
        if overlays:
            blended = overlay(read_image(sample.image), labels, palette, ignore_index=info.description.ignore_index)
            write_rgb_png(output / f"{sample.id}_overlay.png", blended)
    return written


def _volume_predictor(model: Any, info: Any, batch_size: int, device: Any) -> VolumePredictor:
    """A predictor that cuts, resizes and fuses as the model file says its networks were trained."""
    return VolumePredictor({"model": model}, VolumeConfig(**info.extra["volume"]), info.input_size, device, batch_size=batch_size)


def _evaluate_volume_model(
    model: Any, info: Any, samples: list[Sample], description: DatasetDescription, batch_size: int, device: Any
) -> dict[str, Any]:
    """Foreground DSC of a volume model per volume, over cases and global."""
    if description.num_classes != info.description.num_classes:
        raise AtsoError(
            f"the model predicts {info.description.num_classes} classes but the description has "
            f"{description.num_classes}; pass the description the model was trained with"
        )
    scores = VolumeScores(description.classes, description.ignore_index)
    for sample, predictions in _volume_predictor(model, info, batch_size, device).predict(samples, {"model": ["model"]}):
        labels = predictions["model"].labels
        scores.add_volume(labels, read_label_volume(sample.mask, description, labels.shape).data, sample.id)  # type: ignore[arg-type]
    return scores.summary()
