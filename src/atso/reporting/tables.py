"""The paper's tables: Table 1 (a row per generation, @R and @E per strategy) and Table 5 (IoU per class).

Each table is built as rows of cells (``*_rows``), so text, HTML and Markdown show the same numbers.
"""

from __future__ import annotations

from typing import Any

from atso.evaluation.metrics import mean_of_defined


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def _rows_by_generation(records: list[dict[str, Any]], strategies: list[str]) -> dict[str, dict[str, dict]]:
    rows: dict[str, dict[str, dict]] = {}
    for record in records:
        generation = record["generation"]
        label = f"G{generation}" if isinstance(generation, int) else str(generation)
        targets = strategies if record["strategy"] == "shared" else [record["strategy"]]
        for strategy in targets:
            rows.setdefault(label, {})[strategy] = record
    return dict(sorted(rows.items(), key=lambda item: _row_order(item[0])))


def _row_order(label: str) -> tuple[int, int]:
    """G0, G1, ... then final, then to-full (the super -> full stage)."""
    if label.startswith("G") and label[1:].isdigit():
        return (0, int(label[1:]))
    return (1, {"final": 0, "to-full": 1}.get(label, 2))


def headline_metric(records: list[dict[str, Any]]) -> str:
    """``dice`` for a run on volumes (foreground DSC, as the paper's medical tables), else ``miou``."""
    return "dice" if any(record.get("metric") == "dice" for record in records) else "miou"


def generation_rows(records: list[dict[str, Any]], strategies: list[str], metric: str | None = None) -> list[list[str]]:
    """The cells of :func:`generation_table`, header first (percentages with two decimals, '-' where none)."""
    metric = metric or headline_metric(records)
    reference_key, test_key = f"reference_{metric}", f"test_{metric}"
    header = ["Generation"] + [f"{s} {where}" for s in strategies for where in ("@R", "@E")]
    lines = [header]
    for label, by_strategy in _rows_by_generation(records, strategies).items():
        row = [label]
        for strategy in strategies:
            record = by_strategy.get(strategy, {})
            row += [_pct(record.get(reference_key)), _pct(record.get(test_key))]
        lines.append(row)
    return lines


def generation_table(records: list[dict[str, Any]], strategies: list[str], metric: str | None = None) -> str:
    """Accuracy of the pseudo-labels on R (@R) and of the models on the test set (@E), in percent.

    For ATSO the @E of a generation is the mean over its students (the ensemble is in metrics.jsonl);
    ``final`` is ATSO's final model, ``to-full`` the super -> full-class stage. ``metric`` is ``miou``,
    ``super_miou`` (scores at super-class granularity), ``dice`` or ``global_dice`` (volumes); by
    default the run's headline (:func:`headline_metric`).
    """
    return _format(generation_rows(records, strategies, metric))


def headline_agreement(record: dict[str, Any]) -> float | None:
    """A record's agreement with M0: the mean over its models where recorded, else its ensemble's or single model's."""
    if record.get("agreement_with_m0_mean") is not None:
        return record["agreement_with_m0_mean"]
    agreement = record.get("agreement_with_m0") or {}
    return agreement.get("ensemble", next(iter(agreement.values()), None)) if agreement else None


def diagnostics_rows(records: list[dict[str, Any]], strategies: list[str]) -> list[list[str]]:
    """The cells of :func:`diagnostics_table`, header first."""
    header = ["Generation"] + [f"{s} {what}" for s in strategies for what in ("agree M0", "changed")]
    lines = [header]
    for label, by_strategy in _rows_by_generation(records, strategies).items():
        row = [label]
        for strategy in strategies:
            record = by_strategy.get(strategy, {})
            row += [_pct(headline_agreement(record)), _pct(record.get("changed_fraction"))]
        lines.append(row)
    return lines


def diagnostics_table(records: list[dict[str, Any]], strategies: list[str]) -> str:
    """Lazy-mimicking diagnostics: agreement with M0 on the test set and pseudo-labels changed, in percent."""
    return _format(diagnostics_rows(records, strategies))


def classwise_rows(
    records: list[dict[str, Any]], strategies: list[str], classes: list[str] | None = None
) -> list[list[str]]:
    """Test IoU per class and mIoU (%), Table 5 style, header first.

    One row per model: M0, each strategy's last generation, and ATSO's final model. A generation with
    several models (ATSO's students) gets the mean over its students, as its @E, and a row for their ensemble.
    ``classes`` orders the columns (the description's order; metrics files keep keys sorted).
    """
    chosen: list[tuple[str, dict[str, Any]]] = []
    if headline_metric(records) != "miou":
        return []  # volumes: per-class DSC is in metrics.jsonl
    shared = [r for r in records if r["strategy"] == "shared" and r.get("test")]
    if shared:
        chosen.append(("M0 (supervised, G0)", shared[0]))
    for strategy in strategies:
        own = [r for r in records if r["strategy"] == strategy and r.get("test")]
        generations = [r for r in own if isinstance(r["generation"], int)]
        if generations:
            chosen.append((f"{strategy} G{generations[-1]['generation']}", generations[-1]))
        chosen += [(f"{strategy} {r['generation']}", r) for r in own if not isinstance(r["generation"], int)]
    if not chosen:
        return []
    classes = classes or list(next(iter(chosen[0][1]["test"].values()))["per_class_iou"])
    lines = [["Model"] + classes + ["mIoU"]]
    for label, record in chosen:
        models = [group for group in record["test"] if group != "ensemble"]
        per_class = {name: mean_of_defined([record["test"][m]["per_class_iou"].get(name) for m in models]) for name in classes}
        miou = mean_of_defined([record["test"][m]["miou"] for m in models])
        shown = f"{label} (mean of {len(models)} students)" if len(models) > 1 else label
        lines.append([shown] + [_pct(per_class[name]) for name in classes] + [_pct(miou)])
        if "ensemble" in record["test"]:
            ensemble = record["test"]["ensemble"]
            cells = [_pct(ensemble["per_class_iou"].get(name)) for name in classes]
            lines.append([f"{label} ensemble"] + cells + [_pct(ensemble["miou"])])
    return lines



def _format(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = ["  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(line, widths))) for line in lines]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(text)
