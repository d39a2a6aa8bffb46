"""benchmarks/throughput.py: one quick run writes the issue's five figures, the command and the commit."""

import importlib.util
import json
import sys
from pathlib import Path

_path = Path(__file__).parents[2] / "benchmarks" / "throughput.py"
_spec = importlib.util.spec_from_file_location("throughput", _path)
throughput = importlib.util.module_from_spec(_spec)
sys.modules["throughput"] = throughput
_spec.loader.exec_module(throughput)

FIGURES = ("training_ratio", "labeling_ratio", "volume_prediction_ratio", "fold_parallel_wall_ratio", "contention_slowdown")


def test_a_quick_run_writes_the_figures_at_the_top_level(tmp_path, capsys):
    out = tmp_path / "throughput-cpu.json"
    skipped = ["training", "memory", "folds", "contention", "options"]
    assert throughput.main(["--quick", "--skip", *skipped, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(FIGURES) <= set(results) and set(results["targets"]) == set(FIGURES)
    assert results["labeling_ratio"] > 0 and results["volume_prediction_ratio"] > 0  # measured
    assert results["training_ratio"] is None and results["contention_slowdown"] is None  # skipped
    assert results["command"].endswith("--out " + str(out)) and len(results["commit"]) >= 40
    assert results["volumes"]["views"] == ["axial", "coronal", "sagittal"] and results["volumes"]["slices"] > 0
    assert "volume prediction, 3 views" in capsys.readouterr().out
