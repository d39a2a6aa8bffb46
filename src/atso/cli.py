"""The ``atso`` command line: train, run, compare, plan, evaluate, predict, job, report, demo."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from atso import __version__
from atso.errors import AtsoError
from atso.runtime.threads import prefer_passive_waiting
from atso.strategies.registry import strategy_names


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.iterations=200 (repeatable)")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="run directory (default: runs/<config name>-<strategy>)")
    parser.add_argument("--force", action="store_true", help="continue a run directory made with another config")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (CI and cluster logs)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="run up to N ready jobs at once, each in its own process (runtime.workers)")
    parser.add_argument("--devices", metavar="D1,D2",
                        help="run ready jobs at once, one per device, e.g. cuda:0,cuda:1 (runtime.devices)")


def _load(args: argparse.Namespace, extra: list[str]):
    from atso.config import load_config

    overrides = list(args.overrides) + extra
    if getattr(args, "quiet", False):
        overrides.append("runtime.quiet=true")
    if getattr(args, "workers", None) is not None:
        overrides.append(f"runtime.workers={args.workers}")
    if getattr(args, "devices", None):
        overrides.append(f"runtime.devices=[{args.devices}]")
    return load_config(args.config, overrides)


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


def command_run(args: argparse.Namespace, compare: bool = False, strategy: str | None = None) -> int:
    from atso import api

    extra = []
    if strategy or args.strategy:
        extra.append(f"teacher_student.strategy={strategy or args.strategy}")
    if getattr(args, "generations", None) is not None:
        extra.append(f"teacher_student.generations={args.generations}")
    config = _load(args, extra)
    name = "compare" if compare else config.teacher_student.strategy
    out = Path(args.out) if args.out else _default_out(args.config, name)
    _check_before_running(config, out)
    started = time.perf_counter()
    result = api.run(config, out, compare=compare, force=args.force)
    if _is_main():
        _print_results(result, started)
    return 0


def _check_before_running(config, out: Path) -> None:
    """Checks that cost nothing, made before the data is read: the devices exist here, ``--out`` is atso's."""
    from atso.config import check_device
    from atso.running.run_dir import RunDirectory

    check_device(config.runtime.device, "runtime.device")
    for device in config.runtime.devices:
        check_device(device, "runtime.devices")
    RunDirectory(out).check_owned()


def _check_inference_arguments(args: argparse.Namespace) -> None:
    """``predict`` / ``evaluate`` flags, checked before the model is loaded: one line, never a traceback."""
    from atso.config import check_device, check_input_size

    check_device(args.device, "--device")
    if args.batch_size < 1:
        raise AtsoError(f"--batch-size {args.batch_size}: give at least 1, e.g. --batch-size 8")
    if getattr(args, "input_size", None):
        check_input_size(args.input_size, "--input-size")


def _check_inputs(samples, checkpoint: str, description=None, masks: bool = False) -> None:
    """Every image (and mask) read once before predicting, so a bad file is one line before any progress bar.

    Volumes are read while predicting (they are large); their errors come without output written.
    """
    from atso.checkpoints import read_info
    from atso.data.images import read_mask, verify_image
    from atso.data.samples import IMAGE_SUFFIXES

    if not samples or Path(samples[0].image).suffix.lower() not in IMAGE_SUFFIXES:
        return
    if masks and description is None:
        description = read_info(checkpoint).description
    for sample in samples:
        size = verify_image(sample.image)
        if masks and sample.mask is not None:
            read_mask(sample.mask, description, expected_size=size)


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


def _samples_from_arguments(args: argparse.Namespace, need_masks: bool):
    from atso.config import SourceConfig
    from atso.data.samples import list_samples
    from pydantic import ValidationError

    from atso.data.volume_sources import list_decathlon, list_volume_folder

    if args.data_root and (Path(args.data_root) / "dataset.json").is_file():  # a Decathlon task
        return list_decathlon(args.data_root, "training" if need_masks else args.split)
    if args.images and _holds_volumes(Path(args.images)):
        masks = getattr(args, "masks", None)
        return list_volume_folder(args.images, masks, need_labels=need_masks)
    try:
        if args.list:
            source = SourceConfig(list=Path(args.list))
        elif args.data_root:
            source = SourceConfig(root=Path(args.data_root), split=args.split)
        else:
            source = SourceConfig(images=Path(args.images), masks=Path(args.masks) if args.masks else None)
    except ValidationError as exc:
        raise AtsoError(f"data arguments: {exc.errors()[0]['msg']}") from exc
    return list_samples(source, need_masks=need_masks)


def _holds_volumes(path: Path) -> bool:
    """Whether a path is a NIfTI file or a folder holding some."""
    from atso.data.volumes import VOLUME_SUFFIXES

    if path.is_file():
        return path.name.lower().endswith(VOLUME_SUFFIXES)
    return path.is_dir() and any(p.name.lower().endswith(VOLUME_SUFFIXES) for p in path.iterdir())


def _add_data_arguments(parser: argparse.ArgumentParser, masks: bool) -> None:
    group = parser.add_argument_group("data (one of)")
    group.add_argument("--data-root", help="CamVid-layout root; with --split")
    group.add_argument("--split", default="val", help="split under --data-root (default: val)")
    group.add_argument("--images", help="folder of images")
    if masks:
        group.add_argument("--masks", help="folder of masks with the images' stems")
    group.add_argument("--list", help="list file: 'image mask' per line")


def command_evaluate(args: argparse.Namespace) -> int:
    from atso import api
    from atso.data.description import load_description
    from atso.evaluation.metrics import format_scores_table
    from atso.storage import atomic_write_json

    if not (args.data_root or args.images or args.list):
        raise AtsoError("atso evaluate: give the data to score: --data-root ROOT --split NAME, --images/--masks, or --list")
    _check_inference_arguments(args)
    samples = _samples_from_arguments(args, need_masks=True)
    description = load_description(args.description) if args.description else None
    _check_inputs(samples, args.checkpoint, description, masks=True)
    size = tuple(args.input_size) if args.input_size else None
    summary = api.evaluate_checkpoint(args.checkpoint, samples, description, size, args.batch_size, args.device)
    if "per_class_iou" in summary:
        print(format_scores_table(summary))
    else:
        from atso.evaluation.volume_metrics import format_volume_scores

        print(format_volume_scores(summary))
    output = Path(args.output)
    atomic_write_json(output, {"checkpoint": str(args.checkpoint), **summary})
    print(f"wrote {output}")
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from atso import api
    from atso.config import SourceConfig
    from atso.data.samples import list_samples

    _check_inference_arguments(args)
    source = Path(args.input)
    if _holds_volumes(source):
        from atso.data.samples import Sample
        from atso.data.volume_sources import list_volume_folder
        from atso.data.volumes import volume_id

        samples = [Sample(volume_id(source), source)] if source.is_file() else list_volume_folder(source, need_labels=False)
    elif source.is_file():
        from atso.data.samples import Sample

        samples = [Sample(source.stem, source)]
    else:
        samples = list_samples(SourceConfig(images=source), need_masks=False)
    _check_inputs(samples, args.checkpoint)
    written = api.predict_folder(args.checkpoint, samples, args.output, args.overlay, args.batch_size, args.device)
    print(f"wrote {len(written)} label {'volumes' if _holds_volumes(source) else 'maps'} to {args.output}")
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

    overrides = list(args.overrides) + (["runtime.quiet=true"] if args.quiet else [])
    config = demo_config(quick=args.quick, overrides=overrides)
    out = Path(args.out)
    print(f"atso demo: all four strategies on the bundled CamVid subset -> {out}")
    started = time.perf_counter()
    result = api.run(config, out, compare=True, force=args.force)
    if _is_main():
        _print_results(result, started)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atso", description="Semi-supervised segmentation by Asynchronous Teacher-Student Optimization."
    )
    parser.add_argument("--version", action="version", version=f"atso {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train the supervised model M0 on the labeled set and score it")
    _add_config_arguments(train)
    _add_run_arguments(train)
    train.set_defaults(handler=lambda a: command_run(a, strategy="supervised"), strategy=None, generations=None)

    run = commands.add_parser("run", help="run one strategy: supervised, self-learning, stso or atso")
    _add_config_arguments(run)
    _add_run_arguments(run)
    run.add_argument("--strategy", choices=strategy_names())
    run.add_argument("--generations", type=int, help="T, teacher-student generations after M0")
    run.set_defaults(handler=command_run)

    compare = commands.add_parser("compare", help="run all four strategies sharing one M0; print a Table-1 table")
    _add_config_arguments(compare)
    _add_run_arguments(compare)
    compare.add_argument("--generations", type=int, help="T, teacher-student generations after M0")
    compare.set_defaults(handler=lambda a: command_run(a, compare=True), strategy=None)

    plan = commands.add_parser("plan", help="print the plan (jobs, starts, teachers) without running anything")
    _add_config_arguments(plan)
    plan.add_argument("--strategy", choices=strategy_names())
    plan.add_argument("--generations", type=int)
    plan.add_argument("--compare", action="store_true", help="the plan of 'atso compare'")
    plan.set_defaults(handler=command_plan)

    evaluate = commands.add_parser("evaluate", help="score a model file on labeled images or volumes")
    evaluate.add_argument("--checkpoint", required=True, help="model.pt written by atso")
    _add_data_arguments(evaluate, masks=True)
    evaluate.add_argument("--description", help="dataset description (default: the model's own)")
    evaluate.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="scale the network sees")
    evaluate.add_argument("--output", default="evaluation.json", help="JSON file (default: evaluation.json)")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--device", default="auto")
    evaluate.set_defaults(handler=command_evaluate)

    predict = commands.add_parser("predict", help="write class-index PNGs for images, or NIfTI labels for volumes")
    predict.add_argument("--checkpoint", required=True, help="model.pt written by atso")
    predict.add_argument("--input", required=True, help="an image or a folder of images")
    predict.add_argument("--output", required=True, help="folder for the label maps")
    predict.add_argument("--overlay", action="store_true", help="also write coloured overlays")
    predict.add_argument("--batch-size", type=int, default=8)
    predict.add_argument("--device", default="auto")
    predict.set_defaults(handler=command_predict)

    job = commands.add_parser("job", help="run one job of an existing run directory")
    job.add_argument("run_dir")
    job.add_argument("job_id")
    job.add_argument("--device", help="override runtime.device for this job, e.g. cuda:1")
    job.add_argument("--quiet", action="store_true", help="no progress bars")
    job.set_defaults(handler=command_job)

    report = commands.add_parser("report", help="write RUN_DIR/report/index.html and summary.md for a run")
    report.add_argument("run_dir")
    report.add_argument("--no-cases", action="store_true", help="skip predicting the test set for the case overlays")
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    report.set_defaults(handler=command_report)

    demo = commands.add_parser("demo", help="compare all strategies on the bundled CamVid subset (a few minutes)")
    demo.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    demo.add_argument("--quick", action="store_true", help="a much shorter run, for a smoke test")
    demo.add_argument("--force", action="store_true")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    demo.set_defaults(handler=command_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``atso`` console script."""
    prefer_passive_waiting()  # before PyTorch is imported: OpenMP reads it once (atso.runtime.threads)
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except AtsoError as exc:
        print(f"atso: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atso: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
