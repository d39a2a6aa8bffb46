"""The paper's Table 1 layout: a row per generation, @R and @E columns per strategy."""

from __future__ import annotations

from typing import Any


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}"


def _rows_by_generation(records: list[dict[str, Any]], strategies: list[str]) -> dict[str, dict[str, dict]]:
    rows: dict[str, dict[str, dict]] = {}
    for record in records:
        generation = record["generation"]
        label = "final" if generation == "final" else f"G{generation}"
        targets = strategies if record["strategy"] == "shared" else [record["strategy"]]
        for strategy in targets:
            rows.setdefault(label, {})[strategy] = record
    return dict(sorted(rows.items(), key=lambda item: (item[0] == "final", int(item[0][1:]) if item[0] != "final" else 0)))


def generation_table(records: list[dict[str, Any]], strategies: list[str], metric: str = "miou") -> str:
    """Accuracy of the pseudo-labels on R (@R) and of the models on the test set (@E), in percent.

    For ATSO the @E of a generation is the ensemble of its students; ``final`` is ATSO's final model.
    """
    reference_key, test_key = f"reference_{metric}", f"test_{metric}"
    header = ["Generation"] + [f"{s} {where}" for s in strategies for where in ("@R", "@E")]
    lines = [header]
    for label, by_strategy in _rows_by_generation(records, strategies).items():
        row = [label]
        for strategy in strategies:
            record = by_strategy.get(strategy, {})
            row += [_pct(record.get(reference_key)), _pct(record.get(test_key))]
        lines.append(row)
    return _format(lines)


def diagnostics_table(records: list[dict[str, Any]], strategies: list[str]) -> str:
    """Lazy-mimicking diagnostics: agreement with M0 on the test set and pseudo-labels changed, in percent."""
    header = ["Generation"] + [f"{s} {what}" for s in strategies for what in ("agree M0", "changed")]
    lines = [header]
    for label, by_strategy in _rows_by_generation(records, strategies).items():
        row = [label]
        for strategy in strategies:
            record = by_strategy.get(strategy, {})
            agreement = record.get("agreement_with_m0") or {}
            headline = agreement.get("ensemble", next(iter(agreement.values()), None)) if agreement else None
            row += [_pct(headline), _pct(record.get("changed_fraction"))]
        lines.append(row)
    return _format(lines)


def _format(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = ["  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(line, widths))) for line in lines]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(text)
