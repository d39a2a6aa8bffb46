"""A real full disk and a real read-only folder: a small tmpfs in a private mount namespace.

The run fills the disk while writing M0's checkpoint, stops with one line, is refused with one line
while the folder is read-only, and finishes once space is freed, with the uninterrupted run's
metrics. Skipped where mounting is not allowed (not root, or no ``unshare``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atso.cli import main

from conftest import tiny_config

SCRIPT = r"""
set -u
mount -t tmpfs -o size=1m tmpfs "$DISK" || exit 77
# Leave about 48 KiB: config.yaml, the manifest and splits/ fit, M0's state.pt (~80 KiB) does not.
head -c $((1024 * 1024 - 48 * 1024)) /dev/zero > "$DISK/filler" 2>/dev/null
run() { "$PYTHON" -m atso train "$CONFIG" --out "$DISK/run" --quiet > /dev/null 2> "$RESULTS/$1.err"; echo $? > "$RESULTS/$1.rc"; }
run full
mount -o remount,ro "$DISK" && run read-only
mount -o remount,rw "$DISK" && rm "$DISK/filler" && run freed
cp "$DISK/run/metrics.jsonl" "$RESULTS/metrics.jsonl" 2>/dev/null
find "$DISK/run" -name '*.tmp' > "$RESULTS/leftovers"
exit 0
"""


def _one_line(results: Path, name: str) -> str:
    err = (results / f"{name}.err").read_text().strip()
    assert (results / f"{name}.rc").read_text().strip() == "2", err
    assert len(err.splitlines()) == 1 and err.startswith("atso: error: "), err
    return err


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare to mount a tmpfs")
def test_full_disk_and_read_only_folder_stop_cleanly_and_the_run_resumes(tiny_dataset, tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tiny_dataset)))
    assert main(["train", str(config_file), "--out", str(tmp_path / "reference"), "--quiet"]) == 0
    disk, results = tmp_path / "disk", tmp_path / "results"
    disk.mkdir()
    results.mkdir()
    env = dict(os.environ, DISK=str(disk), RESULTS=str(results), CONFIG=str(config_file), PYTHON=sys.executable,
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", SCRIPT], env=env, timeout=300)
    if done.returncode == 77 or done.returncode != 0 and not (results / "full.rc").exists():
        pytest.skip("mounting a tmpfs is not allowed here")
    full = _one_line(results, "full")
    assert "No space left on device" in full and "then resume" in full, full
    read_only = _one_line(results, "read-only")
    assert "Read-only file system" in read_only, read_only
    assert (results / "freed.rc").read_text().strip() == "0", (results / "freed.err").read_text()
    assert (results / "metrics.jsonl").read_text() == (tmp_path / "reference" / "metrics.jsonl").read_text()
    assert (results / "leftovers").read_text() == ""
