"""The README's quick start, command by command, on a tiny generated folder (a shorter recipe, the same commands)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import atso.cli.init as init_command
from atso.cli import main

from conftest import write_dataset

README = Path(__file__).resolve().parents[1] / "README.md"
TINY_RECIPE = {
    "model": {"name": "small_unet", "options": {"base_channels": 4, "depth": 2}},
    "train": {"iterations": 6, "student_iterations": 3, "batch_size": 4, "lr": 0.05, "checkpoint_every": 3},
    "teacher_student": {"strategy": "atso", "generations": 1, "folds": 2},
    "evaluation": {"batch_size": 4},
    "runtime": {"device": "cpu"},
}


def quick_start_commands() -> list[list[str]]:
    """The lines of the first bash block under '## Quick start', comments dropped."""
    section = README.read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("  #")[0]) for line in block.splitlines() if line.strip()]


def test_the_quick_start_runs_from_init_to_a_report(tmp_path, monkeypatch, capsys):
    commands = quick_start_commands()
    assert [c[:2] for c in commands] == [["atso", "init"], ["atso", "plan"], ["atso", "train"], ["atso", "compare"],
                                         ["atso", "evaluate"], ["atso", "predict"]]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(init_command, "RECIPE", TINY_RECIPE)
    write_dataset(tmp_path / "my-data", {"train": 12, "val": 4})
    for command in commands:
        assert main(command[1:]) == 0, command
    out = capsys.readouterr().out
    assert "found: CamVid layout" in out and "M0 on the test set" in out and "atso @E" in out
    assert (tmp_path / "runs" / "compare" / "report" / "index.html").is_file()
    manifest = json.loads((tmp_path / "runs" / "compare" / "manifest.json").read_text())
    assert manifest["jobs"]["g0/m0"]["outputs"]["copied_from"].endswith("runs/m0/jobs/g0/m0/model.pt")
    assert json.loads((tmp_path / "runs" / "val.json").read_text())["num_cases"] == 4
    assert len(list((tmp_path / "runs" / "predictions" / "overlays").glob("*.png"))) == 4

