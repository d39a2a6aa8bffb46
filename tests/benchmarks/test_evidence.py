"""The evidence tables: gap closure, means over seeds and the ordering check, on hand-made records."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("evidence", Path(__file__).parents[2] / "benchmarks" / "evidence.py")
evidence = importlib.util.module_from_spec(_spec)
sys.modules["evidence"] = evidence  # dataclasses look their module up here
_spec.loader.exec_module(evidence)


def _records(m0, sl, stso, atso_students, atso_final):
    shared = {"strategy": "shared", "generation": 0, "job": "g0/eval", "test_miou": m0, "reference_miou": m0 - 0.01}
    return [
        shared,
        {"strategy": "self-learning", "generation": 1, "test_miou": sl, "reference_miou": 0.5, "agreement_with_m0_mean": 0.9},
        {"strategy": "stso", "generation": 1, "test_miou": stso, "reference_miou": 0.5, "agreement_with_m0_mean": 0.8},
        {"strategy": "atso", "generation": 1, "test_miou": atso_students, "reference_miou": 0.6, "agreement_with_m0_mean": 0.7},
        {"strategy": "atso", "generation": "final", "test_miou": atso_final, "agreement_with_m0_mean": 0.6},
    ]


def test_gap_closure_means_and_ordering():
    full = [{"strategy": "shared", "generation": 0, "test_miou": 0.60}]
    seeds = {
        0: evidence.summarise_seed(_records(0.40, 0.45, 0.48, 0.50, 0.52), full),
        1: evidence.summarise_seed(_records(0.40, 0.44, 0.47, 0.50, 0.54), full),
    }
    assert seeds[0]["gap_closure"]["atso"] == pytest.approx(0.6)
    assert seeds[0]["gap_closure"]["self-learning"] == pytest.approx(0.25)
    assert seeds[0]["atso-students"] == 0.50 and seeds[0]["atso-stage"] == "final"
    summary = evidence.aggregate("toy", evidence.EXPERIMENTS["camvid"], seeds)
    assert summary["final"]["atso"]["mean"] == pytest.approx(0.53)
    assert summary["final"]["atso"]["std"] == pytest.approx(0.0141421, rel=1e-4)
    assert summary["gap_closure"]["stso"]["mean"] == pytest.approx(0.375)
    assert summary["ordering"]["holds_beyond_spread"] is True
    assert summary["generations"]["atso"][1]["@R"]["mean"] == pytest.approx(0.6)
    markdown = evidence.render_markdown(summary, "cmd", "abc", {"seed 0 compare": 60.0})
    assert "| atso, final model (Algorithm 1) | 53.00 ± 1.41 | 65.00 ± 7.07 % |" in markdown


def test_ordering_fails_when_the_spread_is_larger():
    full = [{"strategy": "shared", "generation": 0, "test_miou": 0.60}]
    seeds = {
        0: evidence.summarise_seed(_records(0.40, 0.45, 0.46, 0.50, 0.47), full),
        1: evidence.summarise_seed(_records(0.40, 0.35, 0.46, 0.50, 0.49), full),
    }
    summary = evidence.aggregate("toy", evidence.EXPERIMENTS["camvid"], seeds)
    assert summary["ordering"]["holds_beyond_spread"] is False


def test_equal_training_control_is_a_row_and_a_gap():
    full = [{"strategy": "shared", "generation": 0, "test_miou": 0.60}]
    long = [{"strategy": "shared", "generation": 0, "test_miou": 0.55}]
    seeds = {
        0: evidence.summarise_seed(_records(0.40, 0.45, 0.48, 0.50, 0.52), full, long),
        1: evidence.summarise_seed(_records(0.40, 0.44, 0.47, 0.50, 0.54), full, [{**long[0], "test_miou": 0.57}]),
    }
    assert seeds[0]["supervised-long"] == 0.55
    summary = evidence.aggregate("toy", evidence.EXPERIMENTS["left-atrium-8"], seeds)
    assert summary["final"]["supervised-long"]["mean"] == pytest.approx(0.56)
    assert summary["gap_at_equal_training"]["mean"] == pytest.approx(0.04)
    markdown = evidence.render_markdown(summary, "cmd", "abc", {})
    assert "| supervised only, trained as long as the full bound | 56.00 ± 1.41 | 80.00 ± 7.07 % |" in markdown  # its own closure
    assert "Gap at equal training (full - supervised trained as long): 4.00 ± 1.41; gap to M0: 20.00 ± 0.00." in markdown


def _finished_run(run_dir: Path, records: list[dict]) -> None:
    """A run directory as the runner leaves it: a manifest naming each evaluation's metrics.json."""
    jobs = {}
    for index, record in enumerate(records):
        path = run_dir / "jobs" / str(index) / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
        jobs[f"job{index}"] = {"outputs": {"metrics": str(path.relative_to(run_dir))}, "finished_at": index, "wall_seconds": 60.0}
    (run_dir / "manifest.json").write_text(json.dumps({"jobs": jobs}))


def test_a_shared_full_bound_serves_every_seed(tmp_path, monkeypatch):
    toy = evidence.Experiment(
        config="c.yaml", recipe=(), full=("data.labeled_count=60",), seeds=(0, 1), note="toy",
        long_supervised=("train.iterations=10",), shared_full=True,
    )
    monkeypatch.setitem(evidence.EXPERIMENTS, "toy", toy)
    out = tmp_path / "out"
    for seed, m0 in ((0, 0.40), (1, 0.42)):
        _finished_run(out / f"seed{seed}" / "compare", _records(m0, 0.45, 0.48, 0.50, 0.52))
        _finished_run(out / f"seed{seed}" / "supervised-long", [{"strategy": "shared", "generation": 0, "test_miou": m0 + 0.1}])
    _finished_run(out / "seed0" / "full", [{"strategy": "shared", "generation": 0, "test_miou": 0.60}])
    evidence.main(["toy", "--tables-only", "--out", str(out), "--results", str(tmp_path / "results")])
    summary = json.loads((out / "results.json").read_text())
    assert [summary["per_seed"][s]["full"] for s in ("0", "1")] == [0.60, 0.60]  # seed 1 has no full run of its own
    assert summary["final"]["full"] == {"mean": 0.60, "std": 0.0, "n": 1}  # one run: shown without a spread
    assert summary["gap_at_equal_training"]["mean"] == pytest.approx(0.09)
    assert not (out / "seed1" / "full").exists()


def test_a_finetune_stage_follows_the_bound_and_m0(tmp_path, monkeypatch):
    """With ``finetune``, the bound and the control fine-tune their M0 like a student; the bound is the fine-tuned one."""
    toy = evidence.Experiment(
        config="c.yaml", recipe=("train.iterations=10",), full=("data.labeled_count=60",), seeds=(0,), note="toy",
        finetune=("train.iterations=5", "train.lr=0.01"),
    )
    monkeypatch.setitem(evidence.EXPERIMENTS, "toy", toy)
    out = tmp_path / "out"
    commands = {}

    def fake_run(command, log, run_dir):
        commands[run_dir.name] = command
        if run_dir.name == "compare":
            _finished_run(run_dir, _records(0.40, 0.45, 0.48, 0.50, 0.52))
        else:
            score = {"full": 0.58, "full-finetuned": 0.62, "supervised-long": 0.44}[run_dir.name]
            _finished_run(run_dir, [{"strategy": "shared", "generation": 0, "test_miou": score}])
        return 1.0

    monkeypatch.setattr(evidence, "_run", fake_run)
    evidence.main(["toy", "--out", str(out), "--results", str(tmp_path / "results")])
    m0 = str(Path("jobs") / "g0" / "m0" / "model.pt")
    control, tuned = " ".join(commands["supervised-long"]), " ".join(commands["full-finetuned"])
    assert f"model.pretrained={out / 'seed0' / 'compare' / m0}" in control and "train.iterations=5" in control
    assert f"model.pretrained={out / 'seed0' / 'full' / m0}" in tuned and "data.labeled_count=60" in tuned
    assert "model.pretrained" not in " ".join(commands["full"])
    summary = json.loads((out / "results.json").read_text())
    assert summary["per_seed"]["0"]["full"] == 0.62 and summary["per_seed"]["0"]["full-m0"] == 0.58
    assert summary["gap_closure"]["atso"]["mean"] == pytest.approx((0.52 - 0.40) / (0.62 - 0.40))
    assert summary["gap_closure"]["supervised-long"]["mean"] == pytest.approx((0.44 - 0.40) / (0.62 - 0.40))
    assert summary["over_control"]["atso"]["mean"] == pytest.approx(0.52 - 0.44)
    markdown = (out / "results.md").read_text()
    assert "| full supervision, fine-tuned like a student (upper bound) | 62.00 |" in markdown
    assert "| supervised only, M0 fine-tuned like a student on S alone (no pseudo-labels) | 44.00 |" in markdown
