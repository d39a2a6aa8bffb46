"""The run commands: train, run, compare, plan, job, report and demo over a config and a run directory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from atso.errors import AtsoError

def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.iterations=200 (repeatable)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="run directory (default: runs/<config name>-<strategy>)")
    parser.add_argument("--force", action="store_true", help="continue a run directory made with another config")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (CI and cluster logs)")
    parser.add_argument("--data", metavar="DIR", help="the training data's folder: sets data.train.root "
                        "(and data.test.root when the config tests under the same root)")
    parser.add_argument("--test", metavar="DIR", help="the test data's folder: sets data.test.root, or a folder of images/ masks/")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="run up to N ready jobs at once, each in its own process (runtime.workers)")
    parser.add_argument("--devices", metavar="D1,D2",
                        help="run ready jobs at once, one per device, e.g. cuda:0,cuda:1 (runtime.devices)")


def add_m0_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--m0", metavar="RUN_DIR",
                        help="start from the finished M0 of that run directory (e.g. of 'atso train') instead of training it")


def _load(args: argparse.Namespace, extra: list[str]):
    from atso.config import load_config

    overrides = list(args.overrides) + extra
    overrides += _data_overrides(args, overrides)
    if getattr(args, "quiet", False) or not sys.stderr.isatty():  # a log file gets one line per job, no bars
        overrides.append("runtime.quiet=true")
    if getattr(args, "workers", None) is not None:
        overrides.append(f"runtime.workers={args.workers}")
    if getattr(args, "devices", None):
        overrides.append(f"runtime.devices=[{args.devices}]")
    return load_config(args.config, overrides)


def _data_overrides(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """``--data DIR`` / ``--test DIR`` as the ``--set`` overrides they stand for (paths made absolute here)."""
    import json

    from atso.config import SourceConfig, load_config

    data, test = getattr(args, "data", None), getattr(args, "test", None)
    if not data and not test:
        return []
    config = load_config(args.config, overrides).data
    extra = []
    if data:
        folder = _folder(data, "--data")
        if config.train.root is None:
            raise AtsoError(f"--data {data}: {args.config} lists data.train as files, not under a root folder; "
                            f"use --set data.train.images=..., or write a config for it with 'atso init {data}'")
        extra.append(f"data.train.root={json.dumps(folder)}")
        same_root = isinstance(config.test, SourceConfig) and config.test.root == config.train.root
        if same_root and not test:
            extra.append(f"data.test.root={json.dumps(folder)}")
    if test:
        folder = _folder(test, "--test")
        if isinstance(config.test, SourceConfig) and config.test.root is not None:
            extra.append(f"data.test.root={json.dumps(folder)}")
        elif Path(folder, "images").is_dir() and Path(folder, "masks").is_dir():
            extra.append("data.test=" + json.dumps({"images": f"{folder}/images", "masks": f"{folder}/masks"}))
        else:
            raise AtsoError(f"--test {test}: {args.config} has no data.test root to replace and the folder holds no "
                            "images/ masks/; give such a folder, or set data.test in the config")
    return extra


def _folder(value: str, option: str) -> str:
    folder = Path(value).expanduser().resolve()
    if not folder.is_dir():
        raise AtsoError(f"{option} {value}: no such folder ({folder})")
    return str(folder)


def _default_out(config_path: str, name: str) -> Path:
    return Path("runs") / f"{Path(config_path).stem}-{name}"


def _print_results(result: dict, started: float) -> None:
    from atso.reporting.tables import headline_metric

    measure = "foreground DSC %" if headline_metric(result["records"]) == "dice" else "mIoU %"
    print(f"\nAccuracy ({measure}): @R = pseudo-labels on the reference set, @E = test set")
    print(result["table"])
    if result.get("super_table"):
        print("\nAt super-class granularity (mIoU %):")
        print(result["super_table"])
    print("\nLazy-mimicking diagnostics (%): agreement with M0 on the test set, pseudo-label pixels changed")
    print(result["diagnostics"])
    print(f"\nrun directory: {result['run_dir']}  (metrics.jsonl, manifest.json, jobs/)")
    for strategy, models in result["final_models"].items():
        print(f"final {strategy} model: {', '.join(models)}")
    if result.get("report"):
        print(f"report: {result['report']}")
    print(f"wall time: {time.perf_counter() - started:.1f}s")


def command_run(args: argparse.Namespace, compare: bool = False, m0_only: bool = False) -> int:
    """``run``, ``compare`` and ``train`` (``m0_only``: M0 trained and scored, R left alone)."""
    from atso import api

    extra = []
    if getattr(args, "strategy", None):
        extra.append(f"teacher_student.strategy={args.strategy}")
    if getattr(args, "generations", None) is not None:
        extra.append(f"teacher_student.generations={args.generations}")
    config = _load(args, extra)
    name = "compare" if compare else "m0" if m0_only else config.teacher_student.strategy
    out = Path(args.out) if args.out else _default_out(args.config, name)
    _check_before_running(config, out)
    started = time.perf_counter()
    m0 = getattr(args, "m0", None)
    result = api.run(config, out, compare=compare, force=args.force, m0_only=m0_only, m0=m0)
    if _is_main():
        (_print_m0 if m0_only else _print_results)(result, started)
        if m0_only:
            print(f"next: atso compare {args.config} --m0 {out}  (or atso run ... --m0 {out}) to start from this M0")
    return 0


def _print_m0(result: dict, started: float) -> None:
    """What ``atso train`` made: M0's scores on the test set (no Table 1: there is no generation to compare)."""
    from atso.strategies.plan import M0

    record = result["records"][-1] if result["records"] else {}
    summary = record.get("test", {}).get(M0)
    if summary is None:
        print("\nM0 is not scored: the config has no test set (data.test)")
    elif "per_class_iou" in summary:
        from atso.evaluation.metrics import format_scores_table

        print(f"\nM0 on the test set ({summary.get('num_cases', '?')} images):")
        print(format_scores_table(summary))
    else:
        from atso.evaluation.volume_metrics import format_volume_scores

        print(f"\nM0 on the test set ({len(summary.get('cases', []))} volumes):")
        print(format_volume_scores(summary))
    print(f"\nmodel: {result['final_models']['supervised'][0]}")
    print(f"run directory: {result['run_dir']}  (metrics.jsonl, manifest.json, jobs/)")
    print(f"wall time: {time.perf_counter() - started:.1f}s")


def _check_before_running(config, out: Path) -> None:
    """Checks that cost nothing, made before the data is read: the devices exist here, ``--out`` is atso's."""
    from atso.config import check_device
    from atso.running.run_dir import RunDirectory

    check_device(config.runtime.device, "runtime.device")
    for device in config.runtime.devices:
        check_device(device, "runtime.devices")
    RunDirectory(out).check_owned()


def _is_main() -> bool:
    """Whether this process prints results: always, except on ranks other than 0 under torchrun."""
    from atso.runtime.distributed import is_main

    return is_main()


def command_plan(args: argparse.Namespace) -> int:
    from atso.strategies.plan import make_plan

    extra = [f"teacher_student.strategy={args.strategy}"] if args.strategy else []
    if args.generations is not None:
        extra.append(f"teacher_student.generations={args.generations}")
    config = _load(args, extra)
    print(make_plan(config, compare=args.compare).format())
    return 0


def command_job(args: argparse.Namespace) -> int:
    from atso import api
    from atso.config import check_device

    if args.device is not None:
        check_device(args.device, "--device")
    api.run_job(args.run_dir, args.job_id, device=args.device, quiet=args.quiet)
    return 0


def command_report(args: argparse.Namespace) -> int:
    from atso import api

    path = api.build_report(args.run_dir, cases=not args.no_cases, quiet=True if args.quiet else None)
    print(f"wrote {path} and {path.parent / 'summary.md'}")
    return 0


def command_demo(args: argparse.Namespace) -> int:
    from atso import api
    from atso.demo import demo_config

    quiet = args.quiet or not sys.stderr.isatty()  # a log file gets one line per job, no bars
    overrides = list(args.overrides) + (["runtime.quiet=true"] if quiet else [])
    config = demo_config(quick=args.quick, overrides=overrides)
    out = Path(args.out)
    print(f"atso demo: all four strategies on the bundled CamVid subset -> {out}")
    started = time.perf_counter()
    result = api.run(config, out, compare=True, force=args.force)
    if _is_main():
        _print_results(result, started)
    return 0


