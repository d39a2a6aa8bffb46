"""Table 1 and Table 5 layouts from hand-made metrics records: exact cells."""

from __future__ import annotations

from atso.reporting.tables import classwise_rows, diagnostics_rows, generation_rows, generation_table


def scores(background: float, square: float) -> dict:
    return {"per_class_iou": {"background": background, "square": square}, "miou": (background + square) / 2}


RECORDS = [
    {"job": "g0/eval", "strategy": "shared", "generation": 0, "test": {"g0/m0": scores(0.9, 0.5)},
     "test_miou": 0.7, "reference_miou": 0.6, "agreement_with_m0": {"g0/m0": 1.0}},
    {"job": "stso/g1/eval", "strategy": "stso", "generation": 1, "test": {"stso/g1/student": scores(0.9, 0.6)},
     "test_miou": 0.75, "reference_miou": 0.65, "agreement_with_m0": {"stso/g1/student": 0.8},
     "changed_fraction": 0.125},
    {"job": "atso/g1/eval", "strategy": "atso", "generation": 1,
     "test": {"atso/g1/student-1": scores(0.8, 0.6), "atso/g1/student-2": scores(1.0, 0.8), "ensemble": scores(0.95, 0.75)},
     "test_miou": 0.8, "reference_miou": 0.66666, "changed_fraction": 0.25,
     "agreement_with_m0": {"atso/g1/student-1": 0.7, "atso/g1/student-2": 0.5, "ensemble": 0.65},
     "agreement_with_m0_mean": 0.6},
    {"job": "atso/final/eval", "strategy": "atso", "generation": "final", "test": {"atso/final/model": scores(1.0, 0.7)},
     "test_miou": 0.85, "agreement_with_m0": {"atso/final/model": 0.55}},
]


def test_generation_rows_are_table_1():
    assert generation_rows(RECORDS, ["supervised", "stso", "atso"]) == [
        ["Generation", "supervised @R", "supervised @E", "stso @R", "stso @E", "atso @R", "atso @E"],
        ["G0", "60.00", "70.00", "60.00", "70.00", "60.00", "70.00"],
        ["G1", "-", "-", "65.00", "75.00", "66.67", "80.00"],
        ["final", "-", "-", "-", "-", "-", "85.00"],
    ]


def test_generation_table_text_aligns_the_same_cells():
    lines = generation_table(RECORDS, ["stso", "atso"]).splitlines()
    assert lines[0].split() == ["Generation", "stso", "@R", "stso", "@E", "atso", "@R", "atso", "@E"]
    assert set(lines[1]) == {"-"}
    assert lines[3].split() == ["G1", "65.00", "75.00", "66.67", "80.00"]


def test_diagnostics_prefer_the_mean_over_students():
    rows = diagnostics_rows(RECORDS, ["stso", "atso"])
    assert rows[2] == ["G1", "80.00", "12.50", "60.00", "25.00"]
    assert rows[3] == ["final", "-", "-", "55.00", "-"]


def test_classwise_rows_are_table_5():
    assert classwise_rows(RECORDS, ["supervised", "stso", "atso"]) == [
        ["Model", "background", "square", "mIoU"],
        ["M0 (supervised, G0)", "90.00", "50.00", "70.00"],
        ["stso G1", "90.00", "60.00", "75.00"],
        ["atso G1 (mean of 2 students)", "90.00", "70.00", "80.00"],
        ["atso G1 ensemble", "95.00", "75.00", "85.00"],
        ["atso final", "100.00", "70.00", "85.00"],
    ]


def test_classwise_rows_without_test_scores_are_empty():
    assert classwise_rows([{"strategy": "shared", "generation": 0, "reference_miou": 0.5}], ["atso"]) == []


def test_volume_runs_are_tabled_in_dice():
    records = [
        {"strategy": "shared", "generation": 0, "metric": "dice", "test_dice": 0.8, "reference_dice": 0.75,
         "test": {"g0/m0": {"mean_case_dice": 0.8}}},
        {"strategy": "atso", "generation": 1, "metric": "dice", "test_dice": 0.85, "reference_dice": 0.8,
         "test_miou": None, "test": {"a": {"mean_case_dice": 0.85}}},
    ]
    rows = generation_rows(records, ["atso"])
    assert rows[1:] == [["G0", "75.00", "80.00"], ["G1", "80.00", "85.00"]]
    assert classwise_rows(records, ["atso"]) == []  # per-class DSC lives in metrics.jsonl
