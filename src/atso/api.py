"""The Python API: what the CLI calls, usable from notebooks and scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from atso.checkpoints import load_model
from atso.config import Config, check_paths
from atso.data.description import DatasetDescription
from atso.data.samples import Sample
from atso.errors import AtsoError
from atso.modalities import for_model
from atso.reporting.tables import diagnostics_table, generation_table
from atso.running.context import RunContext
from atso.running.m0_source import adopt_m0, check_m0_source
from atso.running.run_dir import RunDirectory
from atso.running.runner import records as finished_records
from atso.running.runner import run_plan
from atso.runtime import distributed
from atso.runtime.devices import resolve_device
from atso.strategies.plan import M0, Plan, make_plan

__all__ = ["build_report", "evaluate_checkpoint", "make_plan", "predict_folder", "preflight", "run", "run_job"]


def preflight(context: RunContext) -> None:
    """Check every sample once, so bad input fails before any training starts, not hours into a run.

    The network is built once, so an unknown model, option or value fails here too; what each
    modality reads is :meth:`atso.modalities.base.Modality.preflight`.
    """
    check_paths(context.config)  # a missing folder is named as written, before any listing
    context.modality.preflight(context.split, context.labels.mask_description)


def _context(config: Config, run_dir: RunDirectory, plan: Plan, log: Callable[[str], None]) -> RunContext:
    """The run context, with TensorBoard built up front so a missing package fails before any training."""
    observer = None
    if config.runtime.tensorboard and distributed.is_main():
        from atso.reporting.tensorboard import TensorBoardLog

        observer = TensorBoardLog(run_dir.tensorboard_dir)
    return RunContext(config, run_dir, plan, log=log, observer=observer)


def run(
    config: Config,
    out: str | Path,
    compare: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
    report: bool = True,
    m0_only: bool = False,
    m0: str | Path | None = None,
) -> dict[str, Any]:
    """Run (or resume) a strategy, or a comparison of all four, in ``out``; return the results.

    With ``report``, ``out/report/`` is written at the end; a report that fails to draw is logged, never
    fatal: the run's results stand, and ``atso report`` rebuilds it.

    Args:
        m0_only: train and score M0 alone (``atso train``): no pseudo-labels, no report.
        m0: a run directory whose finished M0 this run starts from instead of training its own.

    Under torchrun (``torchrun --nproc_per_node N -m atso run ...``) every process calls this; they
    train and label together, and rank 0 alone checks the data, writes files, logs and reports.

    Raises:
        AtsoError: bad data or config, or ``out`` holds a run made with another config.
    """
    plan = make_plan(config, compare, m0_only)
    run_dir = RunDirectory(out)
    with distributed.session(config.runtime.device):
        main = distributed.is_main()
        if not main:  # one voice and one set of progress bars per run
            log = _silent
            config = config.model_copy(update={"runtime": config.runtime.model_copy(update={"quiet": True})})
        context = _context(config, run_dir, plan, log)
        if main:
            preflight(context)  # bad data fails before the run directory is touched
            source = check_m0_source(m0, config, context.split.labeled) if m0 is not None else None
            run_dir.prepare(config, compare=compare, force=force, m0_only=m0_only)
            if source is not None:
                copied = adopt_m0(source, run_dir)
                log(f"M0: {'copied from ' + str(source.model_path(M0)) if copied else 'already finished here'}; not trained again")
        distributed.barrier()
        run_plan(context, run_job)
    records = finished_records(run_dir, plan)
    strategies = list(plan.strategies)
    report_path = None
    if report and main and not m0_only:
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
    from atso.reporting.report import write_report  # loaded only when a report is drawn (matplotlib)

    return write_report(run_dir, cases=cases, log=log, quiet=quiet)


def _silent(line: str) -> None:
    """A log that drops its lines (the ranks of a distributed run other than rank 0)."""


def run_job(
    run_dir: str | Path,
    job_id: str,
    log: Callable[[str], None] = print,
    device: str | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> None:
    """Run one job of an existing run directory (for schedulers that spread jobs over machines).

    Args:
        device: overrides ``runtime.device`` of the saved config (e.g. ``cuda:1``).
        quiet: no progress bars.
        threads: intra-op threads for this job (default: ``runtime.threads``, as one job of the run).

    Raises:
        AtsoError: the job is unknown, its inputs are not finished, or another process is running it.
    """
    directory = RunDirectory(run_dir)
    config = directory.load_config()
    if device is not None:
        config.runtime.device = device
    if quiet or not distributed.is_main():
        config.runtime.quiet = True
    plan = make_plan(config, **directory.plan_options())
    try:
        plan.job(job_id)
    except KeyError:
        known = ", ".join(job.id for job in plan.jobs)
        raise AtsoError(f"job '{job_id}' is not in the plan of {run_dir}; known jobs: {known}") from None
    with distributed.session(config.runtime.device):
        context = _context(config, directory, plan, log if distributed.is_main() else _silent)
        run_plan(context, run_job, only=job_id, threads=threads)


def evaluate_checkpoint(
    checkpoint: str | Path,
    samples: list[Sample],
    description: DatasetDescription | None = None,
    input_size: tuple[int, int] | None = None,
    batch_size: int = 8,
    device: str = "auto",
    quiet: bool = False,
) -> dict[str, Any]:
    """Score a model file on samples with masks (images: mIoU, volumes: foreground DSC).

    Predictions are resized back to each image's size; volumes are predicted as the model file says.

    Raises:
        AtsoError: the description's class count differs from the model's.
    """
    torch_device = resolve_device(device)
    model, info = load_model(checkpoint, torch_device)
    description = description or info.description
    if description.num_classes != info.description.num_classes:
        raise AtsoError(
            f"{checkpoint}: model predicts {info.description.num_classes} classes but the description has "
            f"{description.num_classes}; pass the description the model was trained with"
        )
    modality = for_model(info, description)
    predictor = modality.file_predictor({"model": model}, info, torch_device, batch_size, input_size, quiet)
    scores = modality.scores(description.classes, description.ignore_index)
    for sample, predictions in predictor.predict(samples, {"model": ["model"]}):
        labels = predictions["model"].labels
        scores.add_case(labels, modality.read_truth(sample, description, labels.shape), sample.id)
    return scores.summary()


def predict_folder(
    checkpoint: str | Path,
    samples: list[Sample],
    output: str | Path,
    overlays: str | Path | None = None,
    batch_size: int = 8,
    device: str = "auto",
    quiet: bool = False,
) -> list[tuple[Path, Path | None]]:
    """Write one label file per sample (a class-index PNG with a palette at the image's size, or a NIfTI volume).

    Args:
        overlays: a folder for coloured overlays (images only), kept apart so ``output`` holds label maps alone.

    Returns:
        each sample's label file and its overlay (None where none was drawn).
    """
    torch_device = resolve_device(device)
    model, info = load_model(checkpoint, torch_device)
    modality = for_model(info)
    predictor = modality.file_predictor({"model": model}, info, torch_device, batch_size, None, quiet)
    overlay_dir = Path(overlays) if overlays is not None else None
    return [
        modality.write_prediction(Path(output), sample, predictions["model"], overlay_dir)
        for sample, predictions in predictor.predict(samples, {"model": ["model"]})
    ]
