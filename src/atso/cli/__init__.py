"""The ``atso`` command line: init, train, run, compare, plan, evaluate, predict, job, report, demo."""

from __future__ import annotations

import argparse
import sys

from atso import __version__
from atso.cli.init import add_init_parser
from atso.cli.inference import add_data_arguments, add_model_arguments, command_evaluate, command_predict
from atso.cli.runs import (
    add_config_arguments,
    add_m0_argument,
    add_run_arguments,
    command_demo,
    command_job,
    command_plan,
    command_report,
    command_run,
)
from atso.errors import AtsoError
from atso.runtime.threads import prefer_brief_spinning
from atso.strategies.registry import strategy_names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atso", description="Semi-supervised segmentation by Asynchronous Teacher-Student Optimization."
    )
    parser.add_argument("--version", action="version", version=f"atso {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_init_parser(commands)

    train = commands.add_parser("train", help="train the supervised model M0 on the labeled set and score it (nothing else)")
    add_config_arguments(train)
    add_run_arguments(train)
    train.set_defaults(handler=lambda a: command_run(a, m0_only=True))

    run = commands.add_parser("run", help="run one strategy: supervised, self-learning, stso or atso")
    add_config_arguments(run)
    add_run_arguments(run)
    run.add_argument("--strategy", choices=strategy_names())
    run.add_argument("--generations", type=int, help="T, teacher-student generations after M0")
    add_m0_argument(run)
    run.set_defaults(handler=command_run)

    compare = commands.add_parser("compare", help="run all four strategies sharing one M0; print a Table-1 table")
    add_config_arguments(compare)
    add_run_arguments(compare)
    compare.add_argument("--generations", type=int, help="T, teacher-student generations after M0")
    add_m0_argument(compare)
    compare.set_defaults(handler=lambda a: command_run(a, compare=True))

    plan = commands.add_parser("plan", help="print the plan (jobs, starts, teachers) without running anything")
    add_config_arguments(plan)
    plan.add_argument("--strategy", choices=strategy_names())
    plan.add_argument("--generations", type=int)
    plan.add_argument("--compare", action="store_true", help="the plan of 'atso compare'")
    plan.set_defaults(handler=command_plan)

    evaluate = commands.add_parser("evaluate", help="score a model file on labeled images or volumes")
    add_model_arguments(evaluate)
    add_data_arguments(evaluate, masks=True)
    evaluate.add_argument("--description", help="dataset description (default: the model's own)")
    evaluate.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="scale the network sees")
    evaluate.add_argument("--output", default="evaluation.json", help="JSON file (default: evaluation.json; never replaced without --force)")
    evaluate.add_argument("--force", action="store_true", help="replace an existing --output file")
    evaluate.set_defaults(handler=command_evaluate)

    predict = commands.add_parser("predict", help="write class-index PNGs for images, or NIfTI labels for volumes")
    add_model_arguments(predict)
    predict.add_argument("--input", required=True, help="an image or a folder of images")
    predict.add_argument("--output", required=True, help="folder for the label maps")
    predict.add_argument("--overlay", action="store_true", help="also write coloured overlays, into OUTPUT/overlays/")
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
    prefer_brief_spinning()  # before PyTorch is imported: OpenMP reads it once (atso.runtime.threads)
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
