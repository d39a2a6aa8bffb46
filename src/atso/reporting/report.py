"""A run's report: ``report/index.html`` (one self-contained file) and ``report/summary.md`` (+ images).

Both are rendered from one list of blocks (headings, tables, figures), so they show the same numbers.
The report reads only the run directory: config, split lists, manifest, metrics and model files; it
predicts the test cases it draws but never trains. Rebuild it at any time with ``atso report RUN_DIR``.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from atso import __version__
from atso.config import Config
from atso.data.description import load_description
from atso.data.samples import read_list_file
from atso.errors import AtsoError
from atso.modalities import for_kind
from atso.reporting.cases import (
    BEFORE, CaseChange, background_class, class_legend, compare_cases, evenly_spaced, tile_names,
)
from atso.reporting.figures import INSTALL_HINT, generation_curves, matplotlib_available
from atso.reporting.render import Block, Cell, Details, Figure, Heading, Link, Table, Text, figures_of, render_html, render_markdown
from atso.reporting.tables import classwise_rows, diagnostics_rows, generation_rows, headline_metric
from atso.running.run_dir import RunDirectory
from atso.storage import atomic_write_bytes, atomic_write_text, read_json
from atso.strategies.plan import M0, EvaluateJob, Plan, make_plan

MAX_TEST_CASES = 100  # predicting more than this for a report is not worth the wait


# ----- building --------------------------------------------------------------------------------------
def write_report(
    run_dir: str | Path, cases: bool = True, log: Callable[[str], None] = print, quiet: bool | None = None
) -> Path:
    """Build ``RUN_DIR/report/`` from whatever the run has finished so far; return ``index.html``'s path.

    Args:
        run_dir: a run directory written by ``atso run`` / ``atso compare``.
        cases: predict the test set with M0 and the final models to draw gained and lost cases.
        log: where to say what is left out (matplotlib missing, unfinished models).
        quiet: no progress bars; default: the run's ``runtime.quiet``.

    Raises:
        AtsoError: ``run_dir`` is not a run directory.
    """
    directory = RunDirectory(run_dir)
    if not directory.path.is_dir():
        raise AtsoError(f"{directory.path}: not a run directory (no such folder); run 'atso run' first")
    config = directory.load_config()
    plan = _plan(config, directory)
    records = _records(directory, plan)
    blocks = _blocks(directory, config, plan, records, cases, log, config.runtime.quiet if quiet is None else quiet)
    out = directory.report_dir
    figures = {figure.name: figure for figure in figures_of(blocks)}
    for stale in out.glob("cases/*.png"):  # cases an earlier report drew, not this one
        if str(stale.relative_to(out)) not in figures:
            stale.unlink()
    for name, figure in figures.items():
        atomic_write_bytes(out / name, figure.png)
    title = f"atso report: {directory.path.resolve().name}"
    atomic_write_text(out / "summary.md", render_markdown(title, blocks))
    return atomic_write_text(out / "index.html", render_html(title, blocks))


def _plan(config: Config, directory: RunDirectory) -> Plan:
    return make_plan(config, **directory.plan_options())


def _records(directory: RunDirectory, plan: Plan) -> list[dict[str, Any]]:
    """Metrics of the finished evaluation jobs, in plan order (metrics.jsonl may lag a crashed run)."""
    finished = directory.finished_jobs()
    records = []
    for job in plan.jobs:
        path = directory.metrics_file(job.id)
        if isinstance(job, EvaluateJob) and job.id in finished and path.is_file():
            records.append(read_json(path))
    return records


def _blocks(
    directory: RunDirectory,
    config: Config,
    plan: Plan,
    records: list[dict[str, Any]],
    cases: bool,
    log: Callable[[str], None],
    quiet: bool,
) -> list[Block]:
    strategies = list(plan.strategies)
    finished = directory.finished_jobs()
    done = sum(job.id in finished for job in plan.jobs)
    blocks: list[Block] = [
        Text(
            f"Run directory {directory.path.resolve()} - strategies: {', '.join(strategies)}; "
            f"generations T={plan.generations}; reference folds K={plan.folds}; "
            f"{done} of {len(plan.jobs)} jobs finished. Written {time.strftime('%Y-%m-%d %H:%M')} by atso {__version__}."
        ),
    ]
    if done < len(plan.jobs):
        blocks.append(Text("The run is not finished: the tables show the jobs finished so far.", note=True))
    blocks += _setup_blocks(directory, config)
    blocks += _accuracy_blocks(records, strategies, load_description(config.data.description).classes)
    blocks += _curve_blocks(records, strategies, plan.generations, log)
    if cases:
        blocks += _case_blocks(directory, config, plan, quiet, records)
    blocks += _time_blocks(plan, finished)
    return blocks


def _setup_blocks(directory: RunDirectory, config: Config) -> list[Block]:
    rows: list[list[Cell]] = [["Set", "List file", "Samples"]]
    names = [("labeled S", "labeled.txt")]
    folds = sorted(directory.splits.glob("reference_fold_*.txt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    names += [(f"reference fold R{p.stem.rsplit('_', 1)[1]}", p.name) for p in folds]
    names.append(("test E", "test.txt"))
    for label, name in names:
        path = directory.splits / name
        if path.is_file():
            rows.append([label, Link(str(path.resolve()), f"../splits/{name}"), str(len(read_list_file(path)))])
        else:
            rows.append([label, "not written yet", "-"])
    return [
        Heading("Set-up"),
        Details("config.yaml (resolved)", directory.config_path.read_text(), "yaml"),
        Table(rows, "splits", "Split sizes; each list file holds 'image [mask]' lines.", text_columns=2),
    ]


def _accuracy_blocks(records: list[dict[str, Any]], strategies: list[str], classes: list[str]) -> list[Block]:
    if not records:
        return [Heading("Accuracy"), Text("No evaluation job has finished yet.", note=True)]
    generation = generation_rows(records, strategies)
    measure = "foreground DSC" if headline_metric(records) == "dice" else "mIoU"
    groups = [("", 1)] + [(strategy, 2) for strategy in strategies]
    diagnostics = diagnostics_rows(records, strategies)
    blocks: list[Block] = [
        Heading("Accuracy"),
        Table(
            generation,
            "generation",
            f"{measure} (%) per generation, as the paper's Table 1. @R: pseudo-labels against the reference set's "
            "truth; @E: the test set. ATSO's @E of a generation is the mean over its students; "
            "'final' is ATSO's final model.",
            groups,
        ),
        Table(
            diagnostics,
            "diagnostics",
            f"Lazy-mimicking diagnostics (%): agreement ({measure}) of the generation's model(s) with M0 on the test set, "
            "and the share of pseudo-label pixels changed from the previous labeling.",
            [("", 1)] + [(strategy, 2) for strategy in strategies],
        ),
    ]
    classwise = classwise_rows(records, strategies, classes)
    if classwise:
        css = "classwise vertical" if len(classwise[0]) > 14 else "classwise"  # many classes: turn their names
        blocks.append(Table(classwise, css, "Test IoU (%) per class, as the paper's Table 5."))
    return blocks


def _curve_blocks(records: list[dict[str, Any]], strategies: list[str], generations: int, log: Callable) -> list[Block]:
    if not records:
        return []
    blocks: list[Block] = [Heading("Across generations")]
    if not matplotlib_available():
        log(f"report: no curves, matplotlib is not installed ({INSTALL_HINT})")
        return blocks + [Text(f"Curves need matplotlib: {INSTALL_HINT}", note=True)]
    png = generation_curves(records, strategies, generations)
    caption = "Dotted: M0. A star: ATSO's final model. Agreement with M0 falling is the student leaving its teacher."
    return blocks + [Figure("curves.png", png, "@R, @E and agreement with M0 per generation", caption)]


def _recorded_case_scores(records: list[dict[str, Any]], finals: dict[str, list[str]]) -> dict[str, dict[str, float]] | None:
    """Per-volume DSC of M0 and each final model as the evaluation jobs recorded them (volumes: no re-scoring)."""
    def cases(record: dict[str, Any], models: list[str]) -> dict[str, float] | None:
        group = models[0] if len(models) == 1 else "ensemble"
        summary = record.get("test", {}).get(group)
        if summary is None or "cases" not in summary:
            return None
        return {case["case_id"]: case["dice"] for case in summary["cases"] if case.get("dice") is not None}

    scores: dict[str, dict[str, float]] = {}
    for record in records:
        for strategy, models in [(BEFORE, [M0])] + list(finals.items()):
            if strategy not in scores and set(models) <= set(record.get("test", {})):
                found = cases(record, models)
                if found is not None:
                    scores[strategy] = found
    return scores if len(scores) == len(finals) + 1 else None


def _case_blocks(
    directory: RunDirectory, config: Config, plan: Plan, quiet: bool, records: list[dict[str, Any]] | None = None
) -> list[Block]:
    heading = Heading("Test cases that changed most")
    finished = directory.finished_jobs()
    test_list = directory.splits / "test.txt"
    samples = read_list_file(test_list) if test_list.is_file() else []
    samples = [s for s in samples if s.mask is not None]
    if not samples:
        return [heading, Text("No test set with masks: nothing to draw.", note=True)]
    finals = {
        strategy: models
        for strategy, models in plan.final_models().items()
        if models != [M0] and all(model in finished for model in models)
    }
    if M0 not in finished or not finals:
        return [heading, Text("No final model beside M0 has finished yet: nothing to compare.", note=True)]
    from atso.runtime.devices import resolve_device

    scored = evenly_spaced(samples, MAX_TEST_CASES)
    description = load_description(config.data.description)
    modality = for_kind(config.data.kind, description)
    changes = compare_cases(
        directory.model_path(M0),
        {s: [directory.model_path(m) for m in models] for s, models in finals.items()},
        scored,
        description,
        {
            "device": resolve_device(config.runtime.device),
            "input_size": tuple(config.data.input_size),
            "batch_size": config.evaluation.batch_size,
            "quiet": quiet,
        },
        # Volumes are slow to predict: rank them by the DSC their evaluation jobs recorded, draw only the picks.
        per_case=_recorded_case_scores(records or [], finals) if modality.slow_to_predict else None,
    )
    measure, case = modality.measure, modality.case_noun
    subset = f" ({len(scored)} of {len(samples)} test {case}s, evenly spaced)" if len(scored) < len(samples) else ""
    blocks: list[Block] = [
        heading,
        Text(
            f"Per-{case} {measure} of M0 and of each strategy's final model on the test set"
            f"{subset}; up to two {case}s that gained most and up to two that lost most, spread over the test set "
            "(different clips first, never neighbouring frames of one clip)" + modality.drawing_note + ". "
            "Error maps: yellow: predicted class equals the truth; red: truth missed (another class or background "
            "predicted); green: a class predicted on background (only for datasets with a 'background' class). "
            "Ignored pixels are not painted."
        ),
    ]
    names = tile_names(description)
    if "truth" in names:
        note = "; background shows the image" if background_class(description) is not None else ""
        blocks.append(Figure("class-colours.png", _png(class_legend(description)), "class colours",
                             f"Class colours of the truth and prediction tiles{note}."))
    for strategy, picks in changes.items():
        label = " + ".join(finals[strategy])
        blocks += [Heading(f"{strategy}: M0 -> {label}", 3), _case_table(strategy, picks, names, measure, case)]
    return blocks


def _case_table(strategy: str, picks: dict[str, list[CaseChange]], names: list[str], measure: str, case: str) -> Table:
    headers = {"image": "Image", "truth": "Truth", "before_classes": "M0", "before_errors": "M0 errors",
               "after_classes": f"{strategy} final", "after_errors": f"{strategy} final errors"}
    if "truth" not in names:  # one class: the error maps are the only predictions shown
        headers.update(before_errors="M0", after_errors=f"{strategy} final")
    rows: list[list[Cell]] = [[f"Case ({measure} change)"] + [headers[name] for name in names]]
    for direction, picked in picks.items():
        for change in picked:
            rows.append(_case_row(strategy, direction, change, names, measure))
        if not picked:
            rows.append([f"no test {case} {direction}"] + [""] * len(names))
    return Table(rows, "cases wide" if len(names) > 3 else "cases", text_columns=len(names) + 1)


def _case_row(strategy: str, direction: str, change: CaseChange, names: list[str], measure: str) -> list[Cell]:
    stem = _safe(change.case_id)
    model = {"before": ("M0", "m0", change.before), "after": (strategy, _safe(strategy), change.after)}
    row: list[Cell] = [f"{'best' if direction == 'gained' else 'worst'}: {change.case_id} ({100 * change.gain:+.2f})"]
    for name in names:
        png = _png(change.tiles[name])
        if name in ("image", "truth"):
            suffix = "" if name == "image" else "-truth"
            row.append(Figure(f"cases/{stem}{suffix}.png", png, f"{name} of {change.case_id}"))
            continue
        side, kind = name.split("_")
        shown, file, score = model[side]
        if kind == "errors":
            caption = f"{measure} {100 * score:.2f}"
            row.append(Figure(f"cases/{stem}-{file}.png", png, f"{shown} on {change.case_id}", caption))
        else:
            row.append(Figure(f"cases/{stem}-{file}-classes.png", png, f"{shown} classes on {change.case_id}"))
    return row


def _time_blocks(plan: Plan, finished: dict[str, Any]) -> list[Block]:
    final = plan.generations + 1  # ATSO's final model trains after the last generation
    rows: list[list[Cell]] = [["Job", "Kind", "Strategy", "Generation", "Wall time"]]
    per_strategy: dict[str, float] = {}
    for job in plan.jobs:
        entry = finished.get(job.id)
        seconds = float(entry["wall_seconds"]) if entry and "wall_seconds" in entry else None
        generation = "final" if job.generation in ("final", final) else f"G{job.generation}"
        rows.append([job.id, job.kind, job.strategy, generation, _duration(seconds)])
        if seconds is not None:
            per_strategy[job.strategy] = per_strategy.get(job.strategy, 0.0) + seconds
    shared = per_strategy.get("shared", 0.0)
    totals: list[list[Cell]] = [["Strategy", "Own jobs", "With shared G0"]]
    totals.append(["shared (G0: M0, its labels, its scores)", _duration(shared), _duration(shared)])
    for strategy in plan.strategies:
        own = per_strategy.get(strategy, 0.0)
        totals.append([strategy, _duration(own), _duration(own + shared)])
    totals.append(["all jobs", _duration(sum(per_strategy.values())), ""])
    return [
        Heading("Wall time"),
        Table(totals, "time-totals", "Summed per strategy, from manifest.json (jobs run once, resumes included)."),
        Table(rows, "time-jobs", "Each job; '-' is not finished yet.", text_columns=4),
    ]


# ----- small helpers ------------------------------------------------------------------------------------
def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _png(image: np.ndarray) -> bytes:
    """A compact PNG (256-colour palette: overlays stay readable at a third of the size)."""
    buffer = io.BytesIO()
    Image.fromarray(image).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
