"""The inference commands: evaluate and predict a model file on images or volumes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from atso.errors import AtsoError


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


def _samples_from_arguments(args: argparse.Namespace, need_masks: bool):
    from atso.config import SourceConfig
    from atso.data.samples import list_samples
    from pydantic import ValidationError

    from atso.data.volume_sources import list_decathlon, list_volume_folder

    if args.data_root and (Path(args.data_root) / "dataset.json").is_file():  # a Decathlon task
        return list_decathlon(args.data_root, _decathlon_split(args.split, args.data_root, need_masks))
    if args.images and _holds_volumes(Path(args.images)):
        masks = getattr(args, "masks", None)
        return list_volume_folder(args.images, masks, need_labels=need_masks)
    try:
        if args.list:
            source = SourceConfig(list=Path(args.list))
        elif args.data_root:
            layout = "cityscapes" if (Path(args.data_root) / "leftImg8bit").is_dir() else "camvid"
            source = SourceConfig(root=Path(args.data_root), layout=layout, split=args.split or "val")
        else:
            source = SourceConfig(images=Path(args.images), masks=Path(args.masks) if args.masks else None)
    except ValidationError as exc:
        raise AtsoError(f"data arguments: {exc.errors()[0]['msg']}") from exc
    return list_samples(source, need_masks=need_masks)


def _decathlon_split(split: str | None, root: str, need_masks: bool) -> str:
    """A Decathlon task's split: ``training`` by default; ``test`` only where no labels are needed (it has none)."""
    split = split or "training"
    if split not in ("training", "test"):
        raise AtsoError(f"--split {split}: a Decathlon task ({root}/dataset.json) has the splits training and test")
    if split == "test" and need_masks:
        raise AtsoError(f"--split test: the test cases of {root}/dataset.json have no labels to score against; "
                        "use --split training, or --images/--masks with your own labels")
    return split


def _holds_volumes(path: Path) -> bool:
    """Whether a path is a NIfTI file or a folder holding some."""
    from atso.data.volumes import VOLUME_SUFFIXES

    if path.is_file():
        return path.name.lower().endswith(VOLUME_SUFFIXES)
    return path.is_dir() and any(p.name.lower().endswith(VOLUME_SUFFIXES) for p in path.iterdir())


def is_quiet(args: argparse.Namespace) -> bool:
    """No progress bars when asked, or when stderr is not a terminal (a log file would fill with carriage returns)."""
    return bool(getattr(args, "quiet", False)) or not sys.stderr.isatty()


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command that runs a saved model takes: the model file, batch, device, progress."""
    parser.add_argument("--checkpoint", required=True, help="model.pt written by atso")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (the default when stderr is not a terminal)")


def add_data_arguments(parser: argparse.ArgumentParser, masks: bool) -> None:
    group = parser.add_argument_group("data (one of)")
    group.add_argument("--data-root", help="a CamVid or Cityscapes root, or a Decathlon task's folder (dataset.json); with --split")
    group.add_argument("--split", help="split under --data-root (default: val; for a Decathlon task, training)")
    group.add_argument("--images", help="folder of images")
    if masks:
        group.add_argument("--masks", help="folder of masks with the images' stems")
    group.add_argument("--list", help="list file: 'image mask' per line")


def command_evaluate(args: argparse.Namespace) -> int:
    from atso import api
    from atso.data.description import load_description
    from atso.evaluation.metrics import format_scores_table
    from atso.storage import atomic_write_text

    if not (args.data_root or args.images or args.list):
        raise AtsoError("atso evaluate: give the data to score: --data-root ROOT --split NAME, --images/--masks, or --list")
    output = Path(args.output)
    if output.exists() and not args.force:
        raise AtsoError(f"--output {output}: exists (an earlier evaluation); give another --output, or --force to replace it")
    _check_inference_arguments(args)
    samples = _samples_from_arguments(args, need_masks=True)
    description = load_description(args.description) if args.description else None
    _check_inputs(samples, args.checkpoint, description, masks=True)
    size = tuple(args.input_size) if args.input_size else None
    summary = api.evaluate_checkpoint(args.checkpoint, samples, description, size, args.batch_size, args.device,
                                      quiet=is_quiet(args))
    if "per_class_iou" in summary:
        print(format_scores_table(summary))
    else:
        from atso.evaluation.volume_metrics import format_volume_scores

        print(format_volume_scores(summary))
    # Scores are fractions of 1 (the tables above print them as %); per-class entries keep the class order.
    record = {"checkpoint": str(args.checkpoint), "units": "fraction (0.5 = 50 %)", **summary}
    atomic_write_text(output, json.dumps(record, indent=2) + "\n")
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
    overlays = Path(args.output) / "overlays" if args.overlay else None
    written = api.predict_folder(args.checkpoint, samples, args.output, overlays, args.batch_size, args.device, quiet=is_quiet(args))
    labels, drawn = len(written), sum(1 for _, overlay in written if overlay is not None)
    message = f"wrote {labels} label {'volumes' if _holds_volumes(source) else 'maps'} to {args.output}"
    if args.overlay:
        message += f" and {drawn} overlays to {overlays}" if drawn else " (no overlays: they are drawn for images only)"
    print(message)
    return 0


