"""Start-up: ``atso --help`` and ``atso plan`` answer without loading torch, numpy or Pillow (seconds on a cold disk)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src"
PROBE = """
import sys
from atso.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(name for name in ("torch", "numpy", "PIL", "monai", "nibabel", "matplotlib") if name in sys.modules)
print("heavy:", ",".join(heavy))
"""


@pytest.mark.parametrize("argv", [["--help"], ["plan", "CONFIG", "--compare"], ["init", "--help"]])
def test_help_and_plan_import_no_heavy_package(tiny_config_file, argv):
    argv = [str(tiny_config_file) if arg == "CONFIG" else arg for arg in argv]
    env = dict(os.environ, PYTHONPATH=str(SOURCE))
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "heavy:", done.stdout
