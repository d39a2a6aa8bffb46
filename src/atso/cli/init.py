"""``atso init DATA --out config.yaml``: a config for a dataset folder atso recognises, and what to edit next."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from atso.errors import AtsoError

# A first run that finishes on a laptop CPU; the printed next steps say which keys to raise.
RECIPE: dict[str, Any] = {
    "model": {"name": "small_unet", "options": {"base_channels": 16}},
    "train": {"iterations": 1000, "student_iterations": 500, "batch_size": 8, "lr": 0.05},
    "teacher_student": {"strategy": "atso", "generations": 2, "folds": 2},
}
LAYOUT_NAMES = {"camvid": "CamVid layout (train/ trainannot/)", "cityscapes": "Cityscapes layout",
                "decathlon": "Medical Segmentation Decathlon task (dataset.json)", "folders": "images/ masks/ folders"}


def add_init_parser(commands: Any) -> None:
    init = commands.add_parser("init", help="write a config for a dataset folder (CamVid, Cityscapes, Decathlon, images/ masks/)")
    init.add_argument("data", help="the dataset's folder")
    init.add_argument("--out", default="config.yaml", help="config file to write (default: config.yaml)")
    init.add_argument("--force", action="store_true", help="replace an existing config file")
    init.set_defaults(handler=command_init)


def command_init(args: argparse.Namespace) -> int:
    """Recognise the folder, check the config it makes, then write it (and a class file if the classes are new)."""
    from atso.config import config_from_dict
    from atso.data.discovery import discover
    from atso.storage import atomic_write_text

    out = Path(args.out)
    classes_file = out.with_name(f"{out.stem}.classes.yaml")
    for path in (out, classes_file):
        if path.exists() and not args.force:
            raise AtsoError(f"{path}: exists; choose another --out, or --force to replace it")
    found = discover(args.data)
    data = dict(found.data)
    if found.description is not None:
        data["description"] = classes_file.name  # resolved against the config's folder, where it is written
    config = {"data": data, **RECIPE}
    config_from_dict(config, source=str(out), base_dir=out.parent.resolve())  # what is written loads
    if found.description is not None:
        atomic_write_text(classes_file, yaml.safe_dump(found.description, sort_keys=False))
    header = f"# Written by 'atso init {args.data}'. Paths resolve against this file's folder.\n"
    atomic_write_text(out, header + yaml.safe_dump(config, sort_keys=False))
    _print_found(found, out, classes_file if found.description is not None else None)
    return 0


def _print_found(found: Any, out: Path, classes_file: Path | None) -> None:
    labeled = found.data["labeled_count"]
    print(f"found: {LAYOUT_NAMES[found.layout]}, {found.kind}s")
    print(f"classes ({len(found.classes)}): {', '.join(found.classes)}")
    print(f"samples: {found.counts['train']} for training ({labeled} labeled = S, {found.counts['train'] - labeled} "
          f"reference = R), {found.counts['test']} test")
    print(f"wrote {out}" + (f" and {classes_file} (the class names)" if classes_file else ""))
    print("edit next:")
    for note in found.notes:
        print(f"  - {note}")
    print(f"  - data.labeled_count ({labeled}), data.input_size ({found.data['input_size']}, the size networks see), "
          "train.iterations (1000) for a longer run")
    print(f"then: atso plan {out} --compare   # what will run")
    print(f"      atso train {out} --out runs/m0   # M0 on the labeled set, scored on the test set")
