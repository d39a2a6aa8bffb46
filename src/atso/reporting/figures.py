"""Curves of @R, @E and agreement with M0 across generations, one line per strategy (matplotlib, optional)."""

from __future__ import annotations

import io
from typing import Any

from atso.reporting.tables import headline_agreement

INSTALL_HINT = "pip install atso[report]"
COLOURS = {"self-learning": "#1f77b4", "stso": "#ff7f0e", "atso": "#2ca02c"}
PANELS = (
    ("reference_miou", "@R: pseudo-labels on R"),
    ("test_miou", "@E: test set"),
    ("agreement", "agreement with M0 (test set)"),
)


def matplotlib_available() -> bool:
    """Whether the optional plotting dependency is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _value(record: dict[str, Any], key: str) -> float | None:
    if key == "agreement":
        value = headline_agreement(record)
    else:  # a run on volumes records DSC where a run on images records mIoU
        value = record.get(key, record.get(key.replace("miou", "dice")))
    return None if value is None else 100 * float(value)


def curve_points(records: list[dict[str, Any]], strategy: str, key: str, generations: int) -> list[tuple[int, float]]:
    """(x, value %) of one strategy's line: the shared G0, its generations, and its final model at T+1."""
    points = []
    for record in records:
        if record["strategy"] not in ("shared", strategy):
            continue
        x = generations + 1 if record["generation"] == "final" else int(record["generation"])
        value = _value(record, key)
        if value is not None:
            points.append((x, value))
    return sorted(points)


def x_ticks(xs: list[int], generations: int) -> list[tuple[int, str]]:
    """G0..GT, plus 'final' only where a panel has a final point (the final model labels no R: no @R slot)."""
    ticks = [(t, f"G{t}") for t in range(generations + 1)]
    return ticks + ([(generations + 1, "final")] if any(x > generations for x in xs) else [])


def generation_curves(records: list[dict[str, Any]], strategies: list[str], generations: int) -> bytes:
    """A PNG with three panels (@R, @E, agreement with M0), mIoU % against generation.

    Raises:
        ImportError: matplotlib is not installed (see :data:`INSTALL_HINT`).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    lines = [s for s in strategies if s != "supervised"]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    try:
        for axis, (key, title) in zip(axes, PANELS):
            m0 = [v for x, v in curve_points(records, "shared", key, generations) if x == 0]
            if m0:
                axis.axhline(m0[0], color="#999999", linestyle=":", linewidth=1.2, label="M0 (supervised)")
            xs = []
            for strategy in lines:
                points = curve_points(records, strategy, key, generations)
                xs += [x for x, _ in points]
                steps = [(x, v) for x, v in points if x <= generations]
                finals = [(x, v) for x, v in points if x > generations]
                colour = COLOURS.get(strategy)
                if steps:
                    axis.plot(*zip(*steps), marker="o", color=colour, linewidth=2, label=strategy)
                if finals:
                    axis.plot(*zip(*finals), marker="*", markersize=13, linestyle="none", color=colour,
                              label=f"{strategy} final")
            ticks = x_ticks(xs, generations)
            axis.set_xticks([x for x, _ in ticks], [label for _, label in ticks])
            axis.set_xlim(-0.3, ticks[-1][0] + 0.3)
            axis.set_title(title, fontsize=11)
            axis.set_ylabel("mIoU (%)")
            axis.grid(alpha=0.3)
        handles, labels = axes[1].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), frameon=False, fontsize=10)
        figure.tight_layout(rect=(0, 0.08, 1, 1))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()
