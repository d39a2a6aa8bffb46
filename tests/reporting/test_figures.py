"""The generation curves' points and x-axis ticks (the tick choice, not pixels)."""

from __future__ import annotations

from atso.reporting.figures import curve_points, x_ticks

# T=1: the shared G0, ATSO's G1 (labels R, scored on E) and its final model (scored on E only).
RECORDS = [
    {"strategy": "shared", "generation": 0, "reference_miou": 0.5, "test_miou": 0.25},
    {"strategy": "atso", "generation": 1, "reference_miou": 0.75, "test_miou": 0.375},
    {"strategy": "atso", "generation": "final", "test_miou": 0.625},
]


def _ticks(key: str) -> list[tuple[int, str]]:
    return x_ticks([x for x, _ in curve_points(RECORDS, "atso", key, 1)], 1)


def test_final_model_is_plotted_at_t_plus_one():
    assert curve_points(RECORDS, "atso", "test_miou", 1) == [(0, 25.0), (1, 37.5), (2, 62.5)]
    assert curve_points(RECORDS, "atso", "reference_miou", 1) == [(0, 50.0), (1, 75.0)]


def test_only_a_panel_with_a_final_point_has_a_final_tick():
    assert _ticks("reference_miou") == [(0, "G0"), (1, "G1")]  # the final model labels no R
    assert _ticks("test_miou") == [(0, "G0"), (1, "G1"), (2, "final")]
