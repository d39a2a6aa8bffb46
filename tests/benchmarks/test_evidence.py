"""The evidence tables: paired differences against the control, the gap, its closure and the goals."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

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


def _one(score):
    return [{"strategy": "shared", "generation": 0, "test_miou": score}]


TOY = evidence.Experiment(config="c.yaml", recipe=(), full=("data.labeled_count=60",), seeds=(0, 1), note="toy", goal_closure=0.5)


def test_paired_differences_gap_closure_from_means_and_goals():
    seeds = {
        0: evidence.summarise_seed(_records(0.40, 0.45, 0.48, 0.50, 0.52), _one(0.41), _one(0.60), _one(0.58)),
        1: evidence.summarise_seed(_records(0.42, 0.44, 0.47, 0.50, 0.54), _one(0.45), _one(0.62), _one(0.58)),
    }
    assert seeds[0]["atso-students"] == 0.50 and seeds[0]["atso-stage"] == "final"
    summary = evidence.aggregate("toy", TOY, seeds)
    assert summary["final"]["atso"]["mean"] == pytest.approx(0.53)
    assert summary["over_control"]["atso"]["mean"] == pytest.approx(0.10)  # 0.11 and 0.09, paired
    assert summary["over_control"]["atso"]["std"] == pytest.approx(0.0141421, rel=1e-4)
    assert summary["m0_converged"]["mean"] == pytest.approx(0.02)  # control - M0: 0.01 and 0.03
    assert summary["gap_at_equal_training"]["mean"] == pytest.approx(0.18)  # 0.19 and 0.17
    assert summary["gap_closure"]["atso"] == pytest.approx((0.53 - 0.43) / 0.18)  # from means
    assert summary["ordering"]["holds_on_the_mean"] is True
    assert summary["goals"] == {
        "gap_at_equal_training": True, "atso_over_control": True, "atso>=stso>=self-learning": True, "atso_gap_closure": True,
    }
    assert summary["generations"]["atso"][1]["@R"]["mean"] == pytest.approx(0.6)
    markdown = evidence.render_markdown(summary, "cmd", "abc", {"seed 0 compare": 60.0})
    assert "| atso, final model (Algorithm 1) | 53.00 ± 1.41 | +10.00 ± 1.41 | 56 % |" in markdown
    assert "| control: M0 + a student's stage on S alone (no pseudo-labels) | 43.00 ± 2.83 |  |  |" in markdown
    assert "M0 converged? control - M0 (more training on S alone) = 2.00 ± 1.41." in markdown


def test_goals_fail_inside_the_spread_and_with_the_wrong_order():
    seeds = {
        0: evidence.summarise_seed(_records(0.40, 0.47, 0.46, 0.50, 0.47), _one(0.44), _one(0.60)),
        1: evidence.summarise_seed(_records(0.40, 0.46, 0.46, 0.50, 0.49), _one(0.44), _one(0.60)),
    }
    summary = evidence.aggregate("toy", TOY, seeds)
    assert summary["over_control"]["atso"]["mean"] == pytest.approx(0.04)
    assert summary["goals"]["atso_over_control"] is True
    assert summary["goals"]["atso>=stso>=self-learning"] is False  # STSO 0.46 < self-learning 0.465
    noisy = {
        0: evidence.summarise_seed(_records(0.40, 0.45, 0.46, 0.50, 0.50), _one(0.44), _one(0.60)),
        1: evidence.summarise_seed(_records(0.40, 0.45, 0.46, 0.50, 0.44), _one(0.44), _one(0.60)),
    }
    assert evidence.aggregate("toy", TOY, noisy)["goals"]["atso_over_control"] is False  # +0.03 ± 0.042


def _finished_run(run_dir: Path, records: list[dict]) -> None:
    """A run directory as the runner leaves it: a manifest naming each evaluation's metrics.json."""
    jobs = {}
    for index, record in enumerate(records):
        path = run_dir / "jobs" / str(index) / "metrics.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record))
        jobs[f"job{index}"] = {"outputs": {"metrics": str(path.relative_to(run_dir))}, "finished_at": index, "wall_seconds": 60.0}
    (run_dir / "manifest.json").write_text(json.dumps({"jobs": jobs}))


def test_the_control_and_the_bound_train_a_students_stage_from_their_m0(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"train": {"images": "i", "masks": "m"}},
        "train": {"iterations": 10, "student_iterations": 5, "lr": 0.05, "student_lr": 0.01,
                  "scale_range": [1.0, 1.0], "student_scale_range": [0.5, 2.0], "blur_probability": 0.0},
    }))
    toy = evidence.Experiment(config=str(config), recipe=(), full=("data.labeled_count=60",), seeds=(0, 1), note="toy", shared_full=True)
    monkeypatch.setitem(evidence.EXPERIMENTS, "toy", toy)
    out = tmp_path / "out"
    commands = {}

    def fake_run(command, log, run_dir):
        commands[f"{run_dir.parent.name}/{run_dir.name}"] = " ".join(command)
        if run_dir.name == "compare":
            _finished_run(run_dir, _records(0.40, 0.45, 0.48, 0.50, 0.52))
        else:
            _finished_run(run_dir, _one({"full-m0": 0.58, "full": 0.62, "control": 0.44}[run_dir.name]))
        return 1.0

    monkeypatch.setattr(evidence, "_run", fake_run)
    evidence.main(["toy", "--out", str(out), "--results", str(tmp_path / "results")])
    m0 = Path("jobs") / "g0" / "m0" / "model.pt"
    assert sorted(commands) == ["seed0/compare", "seed0/control", "seed0/full", "seed0/full-m0", "seed1/compare", "seed1/control"]
    control = commands["seed0/control"]
    assert f"model.pretrained={out / 'seed0' / 'compare' / m0}" in control
    for stage in ("train.iterations=5", "train.lr=0.01", "train.scale_range=[0.5,2.0]", "teacher_student.strategy=supervised"):
        assert stage in control
    assert f"model.pretrained={out / 'seed0' / 'full-m0' / m0}" in commands["seed0/full"]
    assert "data.labeled_count=60" in commands["seed0/full"] and "model.pretrained" not in commands["seed0/full-m0"]
    summary = json.loads((out / "results.json").read_text())
    assert [summary["per_seed"][s]["full"] for s in ("0", "1")] == [0.62, 0.62]  # seed 1 has no bound of its own
    assert summary["final"]["full"] == {"mean": 0.62, "std": 0.0, "n": 1}  # one run: shown without a spread
    assert summary["over_control"]["atso"]["mean"] == pytest.approx(0.52 - 0.44)
    assert summary["gap_at_equal_training"]["mean"] == pytest.approx(0.62 - 0.44)
    assert json.loads((tmp_path / "results" / "toy.json").read_text())["command"] == f"python benchmarks/evidence.py toy --out {out} --results {tmp_path / 'results'}"


def test_m0_from_starts_each_compare_from_that_seeds_trained_m0(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": {"images": "i", "masks": "m"}}, "train": {"iterations": 10}}))
    toy = evidence.Experiment(config=str(config), recipe=(), full=None, seeds=(0, 1), note="toy")
    monkeypatch.setitem(evidence.EXPERIMENTS, "toy", toy)
    commands = {}

    def fake_run(command, log, run_dir):
        commands[f"{run_dir.parent.name}/{run_dir.name}"] = command
        _finished_run(run_dir, _records(0.40, 0.45, 0.48, 0.50, 0.52) if run_dir.name == "compare" else _one(0.44))
        return 1.0

    monkeypatch.setattr(evidence, "_run", fake_run)
    (tmp_path / "m0s" / "seed0" / "m0").mkdir(parents=True)  # seed 1 has none: it trains its own
    evidence.main(["toy", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "r"), "--m0-from", str(tmp_path / "m0s")])
    compare = commands["seed0/compare"]
    assert compare[compare.index("--m0") + 1] == str(tmp_path / "m0s" / "seed0" / "m0")
    assert "--m0" not in commands["seed1/compare"]
    assert "--m0" not in commands["seed0/control"]  # the control starts from the compare's copy


def test_earlier_seeds_join_the_tables_and_take_this_runs_shared_bound(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": {"train": {"images": "i", "masks": "m"}}, "train": {"iterations": 10}}))
    toy = evidence.Experiment(config=str(config), recipe=(), full=("data.labeled_count=60",), seeds=(0, 1, 2), note="toy", shared_full=True)
    monkeypatch.setitem(evidence.EXPERIMENTS, "toy", toy)
    earlier_seeds = {
        0: evidence.summarise_seed(_records(0.40, 0.45, 0.48, 0.50, 0.52), _one(0.41)),  # run without the bound
        1: evidence.summarise_seed(_records(0.42, 0.44, 0.47, 0.50, 0.54), _one(0.45)),
    }
    earlier = evidence.aggregate("toy", toy, earlier_seeds)
    earlier.update({"command": "python benchmarks/evidence.py toy --seeds 0 1 --no-full", "wall_seconds": {"seed 0 compare": 600.0, "seed 2 compare": 999.0}})
    earlier_file = tmp_path / "toy.json"
    earlier_file.write_text(json.dumps(earlier))
    ran = []

    def fake_run(command, log, run_dir):
        ran.append(f"{run_dir.parent.name}/{run_dir.name}")
        scores = {"control": 0.43, "full-m0": 0.58, "full": 0.63}
        _finished_run(run_dir, _records(0.41, 0.46, 0.49, 0.51, 0.56) if run_dir.name == "compare" else _one(scores[run_dir.name]))
        return 1.0

    monkeypatch.setattr(evidence, "_run", fake_run)
    out = tmp_path / "out"
    evidence.main(["toy", "--seeds", "2", "--out", str(out), "--results", str(tmp_path / "r"), "--earlier", str(earlier_file)])
    assert sorted(ran) == ["seed2/compare", "seed2/control", "seed2/full", "seed2/full-m0"]  # seeds 0 and 1 are not rerun
    summary = json.loads((out / "results.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    assert [summary["per_seed"][s]["full"] for s in ("0", "1", "2")] == [0.63, 0.63, 0.63]
    assert summary["final"]["full"]["n"] == 1
    assert summary["over_control"]["atso"]["mean"] == pytest.approx(((0.52 - 0.41) + (0.54 - 0.45) + (0.56 - 0.43)) / 3)
    assert summary["gap_at_equal_training"]["mean"] == pytest.approx(0.63 - (0.41 + 0.45 + 0.43) / 3)
    assert summary["per_seed"]["0"]["measured_by"] == earlier["command"] and "measured_by" not in summary["per_seed"]["2"]
    assert summary["wall_seconds"]["seed 0 compare"] == 600.0
    assert summary["wall_seconds"]["seed 2 compare"] == 1.0  # a seed run now keeps its own time
    markdown = (out / "results.md").read_text()
    assert f"- Seed 1: as measured by `{earlier['command']}`, read back with `--earlier`" in markdown


@pytest.mark.parametrize("content", ["{not json", json.dumps({"experiment": "another", "per_seed": {}})])
def test_a_bad_earlier_file_stops_the_command_before_any_run(tmp_path, monkeypatch, content):
    toy = evidence.Experiment(config="c.yaml", recipe=(), full=None, seeds=(0,), note="toy")
    monkeypatch.setitem(evidence.EXPERIMENTS, "toy", toy)
    monkeypatch.setattr(evidence, "_run", lambda *a: pytest.fail("a run started"))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(SystemExit, match=str(bad)):
        evidence.main(["toy", "--out", str(tmp_path / "out"), "--earlier", str(bad)])
