"""The paper's findings on real data, one command per experiment: Table 1, gap closure, lazy mimicking.

Each experiment runs ``atso compare`` (supervised-only M0, self-learning, STSO, ATSO over T
generations) for every seed, plus a full-supervision run (every training sample labeled) as the
upper bound and a supervised-only control trained as long as that bound (how much of the gap is
labels, not training length), then writes ``results.json`` and ``results.md`` beside the run
directories. Where an experiment has a ``finetune`` stage, the bound and the control are M0 plus a
student's own schedule on true labels only (``model.pretrained``), so what a strategy adds over the
control is what its pseudo-labels add:

* final test accuracy per strategy, mean ± std over seeds (self-learning and STSO: their last
  generation; ATSO: the final model of Algorithm 1, and the mean of its last students);
* gap closure = (strategy - supervised) / (full - supervised), per seed, then mean ± std;
* @R (pseudo-label accuracy on the reference set), @E and agreement with M0 per generation,
  beside the paper's Table 1 (NIH pancreas, 10% labeled).

Runs resume: a rerun skips every finished job, so an interrupted experiment continues where it
stopped, and a finished one only rewrites its tables.

    python benchmarks/evidence.py camvid               # CamVid, 46 of 367 labeled, 3 seeds
    python benchmarks/evidence.py left-atrium-8        # left atrium, 8 of 60 training volumes labeled, 3 seeds
    python benchmarks/evidence.py left-atrium-16
    python benchmarks/evidence.py day-to-dusk          # CamVid daylight -> dusk transfer
    python benchmarks/evidence.py camvid --seeds 0 --set train.student_iterations=300   # a variant

Data roots are the configs' (``../shared/datasets`` beside the repository); point them elsewhere
with ``--set data.train.root=...`` (and the test / unlabeled sources), e.g. to score on a test split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
STRATEGIES = ("self-learning", "stso", "atso")

# The paper's Table 1 (NIH pancreas, 10% labeled; DSC %) and the gap closures section 4.1 quotes.
PAPER_TABLE_1 = {
    "supervised": 72.62,
    "full": 85.04,
    "self-learning": {"@R": [71.41, 74.54, 75.44, 74.72, 74.38, 73.38], "@E": [72.62, 76.82, 78.98, 78.27, 77.78, 77.22]},
    "stso": {"@R": [71.41, 74.54, 75.42, 76.42, 76.93, 77.15], "@E": [72.62, 76.82, 77.88, 79.27, 79.67, 79.57]},
    "atso": {"@R": [71.41, 75.69, 77.05, 77.81, 77.73, 78.07], "@E": [72.62, 78.82, 80.81, 81.69, 81.41, 81.57]},
    "agreement_with_m0_final": {"self-learning": 84.40, "stso": 83.47, "atso": 81.13},
}


@dataclass(frozen=True)
class Experiment:
    """A config, the recipe laid over it, how the upper bound differs, and the seeds."""

    config: str
    recipe: tuple[str, ...]
    full: tuple[str, ...] | None  # overrides of the full-supervision run; None: no upper bound
    seeds: tuple[int, ...]
    note: str
    seed_keys: tuple[str, ...] = ("data.split_seed", "train.seed")
    # Overrides of a supervised-only run on S trained as long as the full bound: the gap at equal
    # training, so a bound that only trained longer than M0 is not read as the worth of the labels.
    long_supervised: tuple[str, ...] | None = None
    # The full bound labels every sample, so where seeds vary only the split it is one run (the first seed's).
    shared_full: bool = False
    # Overrides of a stage that fine-tunes a finished supervised model on its own labels with the students'
    # schedule (iterations, lr, augmentation). Where set, the full bound and the control are that M0 plus
    # this stage: trained exactly as long and as noisily as a student, so a student's schedule is not read
    # as the worth of its pseudo-labels.
    finetune: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


EXPERIMENTS = {
    "camvid": Experiment(
        config="configs/camvid.yaml",
        # M0 and the bound train without rescale or blur (basic flip only): with them, 46 labels reach the
        # full bound at equal training and the gap left is noise. Students are noisier than their teacher
        # (rescale and blur), label with a flip and keep each class's most confident half.
        recipe=(
            "teacher_student.generations=2",
            "data.input_size=[72,96]",
            "train.iterations=1600",
            "train.scale_range=[1,1]",
            "train.blur_probability=0",
            "train.student_iterations=800",
            "train.student_lr=0.01",
            "train.student_scale_range=[0.75,1.5]",
            "train.student_blur_probability=0.2",
            "teacher_student.class_balanced_keep=0.5",
            "teacher_student.label_flip=true",
            "runtime.quiet=true",
        ),
        full=("data.labeled_count=367", "teacher_student.generations=0"),
        # The bound and the control add a student's stage on true labels only: as long and as noisy as a student.
        finetune=(
            "train.iterations=800", "train.lr=0.01", "train.scale_range=[0.75,1.5]", "train.blur_probability=0.2",
        ),
        seeds=(0, 1, 2),
        shared_full=True,
        note="CamVid, 46 of 367 training images labeled (1/8), scored on CamVid val (101 images), mIoU over 11 classes.",
    ),
    "left-atrium-8": Experiment(
        config="configs/left-atrium.yaml",
        recipe=("runtime.quiet=true",),
        full=("data.labeled_count=60", "teacher_student.generations=0", "train.iterations=1200"),
        seeds=(0, 1, 2),
        long_supervised=("teacher_student.generations=0", "train.iterations=1200"),
        shared_full=True,
        note="Left atrium MRI, 8 of the 60 training volumes labeled, scored on the 20 held-out volumes, foreground DSC.",
    ),
    "left-atrium-16": Experiment(
        config="configs/left-atrium.yaml",
        recipe=("data.labeled_count=16", "runtime.quiet=true"),
        full=("data.labeled_count=60", "teacher_student.generations=0", "train.iterations=1200"),
        seeds=(0,),
        long_supervised=("teacher_student.generations=0", "train.iterations=1200"),
        shared_full=True,
        note="Left atrium MRI, 16 of the 60 training volumes labeled, scored on the 20 held-out volumes, foreground DSC.",
    ),
    "day-to-dusk": Experiment(
        config="configs/camvid-day-to-dusk.yaml",
        recipe=("teacher_student.generations=1", "runtime.quiet=true"),
        full=None,
        seeds=(0,),
        note="CamVid daylight frames labeled, dusk frames (0001TP) unlabeled; scored on CamVid val, mIoU.",
        seed_keys=("train.seed",),
    ),
}


def _mean_std(values: list[float]) -> dict[str, Any]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def _fmt(stat: dict[str, Any], scale: float = 100.0) -> str:
    if stat["mean"] is None:
        return "-"
    text = f"{scale * stat['mean']:.2f}"
    return text + (f" ± {scale * stat['std']:.2f}" if stat["n"] > 1 else "")


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"], cwd=REPOSITORY, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _run(command: list[str], log: Path, run_dir: Path) -> float:
    """Run one atso command, appending its output to ``log``; return the run's job time (all sessions).

    The commit a run directory was started on is kept in its ``commit.txt``; a rerun that only
    resumes (or only reads) it keeps that record.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "commit.txt").is_file():
        (run_dir / "commit.txt").write_text(_git_commit() + "\n")
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT, cwd=REPOSITORY)
    return _job_time(run_dir)


def _job_time(run_dir: Path) -> float:
    """Seconds the run's finished jobs took, over every session that worked on it (0 before it started)."""
    manifest = run_dir / "manifest.json"
    jobs = json.loads(manifest.read_text())["jobs"] if manifest.is_file() else {}
    return sum(float(job.get("wall_seconds", 0.0)) for job in jobs.values())


def _records(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's finished evaluation jobs (read job by job: a run in progress has no metrics.jsonl yet)."""
    manifest = run_dir / "manifest.json"
    if not manifest.is_file():
        return []
    jobs = json.loads(manifest.read_text())["jobs"]
    records = []
    for job_id in sorted(jobs, key=lambda j: jobs[j]["finished_at"]):
        path = run_dir / jobs[job_id]["outputs"].get("metrics", "")
        if path.is_file() and path.name == "metrics.json":
            records.append(json.loads(path.read_text()))
    return records


def _metric(records: list[dict[str, Any]]) -> str:
    return "dice" if any(r.get("metric") == "dice" for r in records) else "miou"


def summarise_seed(
    records: list[dict[str, Any]], full_records: list[dict[str, Any]], long_records: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One seed's headline numbers: M0, each strategy's final model, the full bound, per-generation curves.

    ``long_records``: the supervised-only run trained as long as the full bound, where there is one.
    """
    metric = _metric(records)
    test_key, reference_key = f"test_{metric}", f"reference_{metric}"
    shared = next((r for r in records if r["strategy"] == "shared"), None)
    if shared is None:
        raise SystemExit("no finished evaluation yet: run the experiment first")
    strategies = list(dict.fromkeys(r["strategy"] for r in records if r["strategy"] != "shared"))
    result: dict[str, Any] = {"metric": metric, "supervised": shared.get(test_key), "generations": {}, "strategies": strategies}
    for strategy in strategies:
        own = [r for r in records if r["strategy"] == strategy]
        # The shared G0 starts every curve (a super-class variant's own G0 only re-scores M0's labels).
        numbered = sorted((r for r in own if isinstance(r["generation"], int) and r["generation"] > 0), key=lambda r: r["generation"])
        generations = [shared] + numbered
        result["generations"][strategy] = [
            {
                "generation": r["generation"] if r is not shared else 0,
                "@R": r.get(reference_key),
                "@E": r.get(test_key),
                "agreement_with_m0": r.get("agreement_with_m0_mean", (r.get("agreement_with_m0") or {}).get(r.get("job", ""), None)),
                "changed_fraction": r.get("changed_fraction"),
            }
            for r in generations
        ]
        last = numbered[-1] if numbered else None
        # The strategy's output: after super -> full if it has that stage, else ATSO's final model, else the last generation.
        stages = {r["generation"]: r for r in own if not isinstance(r["generation"], int)}
        output = stages.get("to-full") or stages.get("final") or last or {}
        result[strategy] = output.get(test_key)
        result[f"{strategy}-stage"] = output.get("generation")
        if output is not last and last is not None:
            result[f"{strategy}-students"] = last.get(test_key)
        result[f"{strategy}-agreement"] = output.get("agreement_with_m0_mean")
        if metric == "dice" and output:
            result.setdefault("volumes", {})[strategy] = _volume_scores(output)
    if metric == "dice":
        result.setdefault("volumes", {})["supervised"] = _volume_scores(shared)
    long_shared = next((r for r in long_records or [] if r["strategy"] == "shared"), None)
    if long_shared is not None:
        result["supervised-long"] = long_shared.get(test_key)
    if any(r["strategy"] == "shared" for r in full_records):
        result["full"] = next(r for r in full_records if r["strategy"] == "shared").get(test_key)
        if metric == "dice":
            result["volumes"]["full"] = _volume_scores(next(r for r in full_records if r["strategy"] == "shared"))
        gap = (result["full"] or 0) - (result["supervised"] or 0)
        result["gap_closure"] = {
            s: (result[s] - result["supervised"]) / gap if gap > 0 and result.get(s) is not None else None
            # The control's own closure: how much of the gap its schedule closes without a pseudo-label.
            for s in ("supervised-long", *_rows(strategies, result))
        }
    return result


def _volume_scores(record: dict[str, Any]) -> dict[str, Any]:
    """DSC per test volume and global DSC of a record's model(s) (the mean over several students)."""
    models = [group for group in record["test"] if group != "ensemble"]
    cases: dict[str, list[float]] = {}
    for model in models:
        for case in record["test"][model]["cases"]:
            if case["dice"] is not None:
                cases.setdefault(case["case_id"], []).append(case["dice"])
    return {
        "cases": {case: statistics.fmean(values) for case, values in sorted(cases.items())},
        "global_dice": statistics.fmean(record["test"][m]["global_dice"] for m in models),
        "mean_case_dice": statistics.fmean(record["test"][m]["mean_case_dice"] for m in models),
    }


def _rows(strategies: list[str], result: dict[str, Any]) -> list[str]:
    """Each strategy, followed by its last students where it has a final model (ATSO)."""
    rows = []
    for strategy in strategies:
        rows.append(strategy)
        if f"{strategy}-students" in result:
            rows.append(f"{strategy}-students")
    return rows


def aggregate(name: str, experiment: Experiment, seeds: dict[int, dict[str, Any]]) -> dict[str, Any]:
    per_seed = list(seeds.values())
    strategies = per_seed[0]["strategies"]
    long = ["supervised-long"] if all("supervised-long" in s for s in per_seed) else []
    full_m0 = ["full-m0"] if experiment.full and all(s.get("full-m0") is not None for s in per_seed) else []
    rows = ["supervised", *long, *_rows(strategies, per_seed[0])] + ([*full_m0, "full"] if experiment.full else [])
    summary: dict[str, Any] = {
        "experiment": name,
        "note": experiment.note,
        "bounds_finetuned": bool(experiment.finetune),
        "metric": per_seed[0]["metric"],
        "seeds": list(seeds),
        "strategies": strategies,
        "final": {row: _mean_std([s.get(row) for s in per_seed]) for row in rows},
    }
    if experiment.full and experiment.shared_full:  # one run, not one per seed: no spread to show
        for row in ("full", *full_m0):
            summary["final"][row] = _mean_std([per_seed[0].get(row)])
    if experiment.full:
        summary["gap_closure"] = {
            s: _mean_std([seed.get("gap_closure", {}).get(s) for seed in per_seed]) for s in (*long, *_rows(strategies, per_seed[0]))
        }
        if long:
            summary["gap_at_equal_training"] = _mean_std([s.get("full") - s["supervised-long"] for s in per_seed if s.get("full") is not None])
            # What the pseudo-labels add over the same schedule without them.
            summary["over_control"] = {
                s: _mean_std([seed[s] - seed["supervised-long"] for seed in per_seed if seed.get(s) is not None])
                for s in _rows(strategies, per_seed[0])
            }
    curves: dict[str, list[dict[str, Any]]] = {}
    for strategy in strategies:
        length = min(len(s["generations"].get(strategy, [])) for s in per_seed)
        curves[strategy] = [
            {
                "generation": g,
                **{key: _mean_std([s["generations"][strategy][g][key] for s in per_seed])
                   for key in ("@R", "@E", "agreement_with_m0", "changed_fraction")},
            }
            for g in range(length)
        ]
    summary["generations"] = curves
    summary["agreement_with_m0_final"] = {s: _mean_std([seed.get(f"{s}-agreement") for seed in per_seed]) for s in strategies}
    if all(s in strategies for s in STRATEGIES):
        spread = max((summary["final"][s]["std"] or 0.0) for s in STRATEGIES)
        order = [summary["final"][s]["mean"] for s in ("atso", "stso", "self-learning")]
        summary["ordering"] = None if None in order else {
            "atso>stso": order[0] - order[1],
            "stso>self-learning": order[1] - order[2],
            "largest_std": spread,
            "holds_beyond_spread": order[0] - order[1] > spread and order[1] - order[2] > spread,
        }
    summary["per_seed"] = {str(k): v for k, v in seeds.items()}
    return summary


def render_markdown(summary: dict[str, Any], command: str, commit: str, wall: dict[str, float]) -> str:
    unit = "foreground DSC" if summary["metric"] == "dice" else "mIoU"
    seeds = summary["seeds"]
    lines = [
        f"# Evidence: {summary['experiment']}",
        "",
        summary["note"],
        "",
        f"- Command: `{command}`",
        f"- Tables written on commit `{commit}`; runs started on "
        + ", ".join(f"`{c}`" for c in sorted({c for s in summary["per_seed"].values() for c in s.get("run_commits", [])}))
        + f"; seeds {seeds}; job time per run (all sessions): "
        + ", ".join(f"{k} {v / 60:.0f} min" for k, v in wall.items()),
        "",
        f"## Final test accuracy ({unit} %, mean ± std over {len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
        "",
        "| | test | gap closure |",
        "|---|---|---|",
    ]
    labels = {
        "supervised": "supervised only (M0)",
        "supervised-long": "supervised only, trained as long as the full bound",
        "full": "full supervision (upper bound)",
    }
    if summary.get("bounds_finetuned"):
        labels.update({
            "supervised-long": "supervised only, M0 fine-tuned like a student on S alone (no pseudo-labels)",
            "full-m0": "full supervision, M0's schedule only",
            "full": "full supervision, fine-tuned like a student (upper bound)",
        })
    stage_names = {"final": "final model (Algorithm 1)", "to-full": "after super -> full"}
    for strategy in summary["strategies"]:
        stage = summary["per_seed"][str(summary["seeds"][0])].get(f"{strategy}-stage")
        labels[strategy] = f"{strategy}, " + stage_names.get(stage, f"last generation (G{stage})")
        labels[f"{strategy}-students"] = f"{strategy}, last generation (mean of its models)"
    closure = summary.get("gap_closure", {})
    for row, stat in summary["final"].items():
        gap = _fmt(closure[row]) + " %" if row in closure and closure[row]["mean"] is not None else ""
        lines.append(f"| {labels[row]} | {_fmt(stat)} | {gap} |")
    if summary.get("gap_at_equal_training"):
        lines += ["", f"Gap at equal training (full - supervised trained as long): {_fmt(summary['gap_at_equal_training'])}; "
                  f"gap to M0: {_fmt(_mean_std([(s.get('full') or 0) - s['supervised'] for s in summary['per_seed'].values()]))}."]
        lines += ["", "Over the control (strategy - supervised trained as long; what the pseudo-labels add): "
                  + ", ".join(f"{s} {_fmt(v)}" for s, v in summary.get("over_control", {}).items()) + "."]
    if summary.get("ordering"):
        o = summary["ordering"]
        lines += ["", f"ATSO - STSO = {100 * o['atso>stso']:+.2f}, STSO - self-learning = {100 * o['stso>self-learning']:+.2f}; "
                  f"largest seed-to-seed std {100 * o['largest_std']:.2f}: the paper's ordering "
                  + ("holds beyond the spread." if o["holds_beyond_spread"] else "does not hold beyond the spread here.")]
    strategies = summary["strategies"]
    lines += ["", "## Per generation (mean over seeds, %), beside the paper's Table 1 (NIH, DSC)", ""]
    header = "| G | " + " | ".join(f"{s} @R | {s} @E | {s} agree M0" for s in strategies) + " | paper SL @R/@E | paper STSO @R/@E | paper ATSO @R/@E |"
    lines += [header, "|" + "---|" * (1 + 3 * len(strategies) + 3)]
    generations = max(len(c) for c in summary["generations"].values())
    for g in range(generations):
        cells = [f"G{g}"]
        for strategy in strategies:
            curve = summary["generations"][strategy]
            point = curve[g] if g < len(curve) else None
            cells += [_fmt(point[k]) if point else "-" for k in ("@R", "@E", "agreement_with_m0")]
        for strategy in STRATEGIES:
            paper = PAPER_TABLE_1[strategy]
            cells.append(f"{paper['@R'][g]:.2f} / {paper['@E'][g]:.2f}" if g < len(paper["@R"]) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "ATSO's @E per generation is the mean of its two students; its final model is in the first table. "
        "Agreement with M0: the generation's model(s) against M0's predictions on the test set "
        f"({unit}); the paper's lazy-mimicking figures report it falling furthest for ATSO "
        f"(final models: self-learning {PAPER_TABLE_1['agreement_with_m0_final']['self-learning']}, "
        f"STSO {PAPER_TABLE_1['agreement_with_m0_final']['stso']}, ATSO {PAPER_TABLE_1['agreement_with_m0_final']['atso']}). "
        f"Paper gap closures (NIH, 10%): self-learning 51 %, STSO 57 %, ATSO 73 %.",
        "",
        "Agreement with M0 of each strategy's final model (%): "
        + ", ".join(f"{s} {_fmt(summary['agreement_with_m0_final'][s])}" for s in strategies),
    ]
    first = summary["per_seed"][str(seeds[0])]
    if "volumes" in first:
        columns = sorted(first["volumes"], key=lambda c: (c != "supervised", c == "full"))
        lines += ["", f"## Per test volume (DSC %, seed {seeds[0]})", "",
                  "| volume | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
        for case in first["volumes"]["supervised"]["cases"]:
            lines.append(f"| {case} | " + " | ".join(
                f"{100 * first['volumes'][c]['cases'][case]:.2f}" if case in first["volumes"][c]["cases"] else "-" for c in columns
            ) + " |")
        for key, label in (("mean_case_dice", "mean over volumes"), ("global_dice", "global (all volumes merged)")):
            lines.append(f"| {label} | " + " | ".join(f"{100 * first['volumes'][c][key]:.2f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the experiment's")
    parser.add_argument("--out", help="default: bench_out/evidence/EXPERIMENT")
    parser.add_argument("--results", default="benchmarks/results", help="where results.{json,md} are copied")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for every run (a variant of the recipe)")
    parser.add_argument("--no-full", action="store_true", help="skip the full-supervision bound and its equal-training control")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once (give each OMP_NUM_THREADS cores)")
    parser.add_argument("--tables-only", action="store_true", help="run nothing: rebuild the tables from finished runs")
    args = parser.parse_args(argv)
    experiment = EXPERIMENTS[args.experiment]
    seeds = tuple(args.seeds or experiment.seeds)
    out = Path(args.out or REPOSITORY / "bench_out" / "evidence" / args.experiment).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.log"
    atso = [sys.executable, "-m", "atso"]
    wall: dict[str, float] = {}
    per_seed: dict[int, dict[str, Any]] = {}
    def seed_flags(seed: int) -> list[str]:
        seeded = [f"{key}={seed}" for key in experiment.seed_keys]
        return [arg for override in (*experiment.recipe, *seeded, *args.overrides) for arg in ("--set", override)]

    def supervised_run(name: str, seed: int, overrides: tuple[str, ...], pretrained: Path | None = None) -> tuple[str, Path, list[str]]:
        """A supervised-only run of a seed; ``pretrained``: fine-tune that model with the experiment's ``finetune``."""
        run_dir = out / f"seed{seed}" / name
        extra = (*overrides, "teacher_student.strategy=supervised")
        if pretrained is not None:
            extra += (*experiment.finetune, f"model.pretrained={pretrained}")
        flags = seed_flags(seed) + [arg for o in extra for arg in ("--set", o)]
        return name, run_dir, [*atso, "run", experiment.config, "--out", str(run_dir), *flags]

    with_bounds = bool(experiment.full) and not args.no_full
    m0 = Path("jobs") / "g0" / "m0" / "model.pt"

    def seed_runs(seed: int) -> list[tuple[str, Path, list[str]]]:
        """A seed's compare, then its control: M0 trained as long as the bound (or fine-tuned like a student)."""
        compare_dir = out / f"seed{seed}" / "compare"
        runs = [("compare", compare_dir, [*atso, "compare", experiment.config, "--out", str(compare_dir), *seed_flags(seed)])]
        if with_bounds and experiment.finetune:
            runs.append(supervised_run("supervised-long", seed, ("teacher_student.generations=0",), compare_dir / m0))
        elif with_bounds and experiment.long_supervised:
            runs.append(supervised_run("supervised-long", seed, experiment.long_supervised))
        return runs

    def full_runs(seed: int) -> list[tuple[str, Path, list[str]]]:
        """The full-supervision bound (then its fine-tune stage, where the experiment has one)."""
        if not with_bounds or (experiment.shared_full and seed != seeds[0]):
            return []  # the first seed's bound serves every seed
        runs = [supervised_run("full", seed, experiment.full)]
        if experiment.finetune:
            runs.append(supervised_run("full-finetuned", seed, experiment.full, runs[0][1] / m0))
        return runs

    def run_chain(runs: list[tuple[str, Path, list[str]]], seed: int) -> dict[str, float]:
        """Run (or resume, or only read) runs one after the other; their job times."""
        return {
            f"seed {seed} {name}": _job_time(run_dir) if args.tables_only else _run(command, log, run_dir)
            for name, run_dir, command in runs
        }

    # Chains are independent: --jobs 2 runs two at once (one thread each on a 2-core machine), longest first.
    chains = [(seed_runs(seed), seed) for seed in seeds] + [(full_runs(seed), seed) for seed in seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for times in pool.map(lambda chain: run_chain(*chain), [c for c in chains if c[0]]):
            wall.update(times)
    for seed in seeds:
        runs = {name: run_dir for name, run_dir, _ in seed_runs(seed)}
        bound_seed = seeds[0] if experiment.shared_full else seed
        full_dir = out / f"seed{bound_seed}" / ("full-finetuned" if experiment.finetune else "full")
        per_seed[seed] = summarise_seed(
            _records(runs["compare"]),
            _records(full_dir) if with_bounds else [],
            _records(runs["supervised-long"]) if "supervised-long" in runs else None,
        )
        if experiment.finetune and with_bounds:
            full_m0 = next((r for r in _records(out / f"seed{bound_seed}" / "full") if r["strategy"] == "shared"), None)
            per_seed[seed]["full-m0"] = full_m0.get(f"test_{per_seed[seed]['metric']}") if full_m0 else None
        dirs = [*runs.values(), full_dir, full_dir.parent / "full"]
        per_seed[seed]["run_commits"] = sorted({(d / "commit.txt").read_text().strip() for d in dirs if (d / "commit.txt").is_file()})
    summary = aggregate(args.experiment, experiment if not args.no_full else Experiment(**{**experiment.__dict__, "full": None}), per_seed)
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--tables-only"]
    command = "python benchmarks/evidence.py " + " ".join(shown)
    commit = _git_commit()
    summary.update({"command": command, "commit": commit, "wall_seconds": wall})
    markdown = render_markdown(summary, command, commit, wall)
    for folder in (out, REPOSITORY / args.results):
        folder.mkdir(parents=True, exist_ok=True)
        stem = "results" if folder == out else args.experiment
        (folder / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n")
        (folder / f"{stem}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
