"""Print the sha256 of metrics.jsonl for `atso demo --quick` and for a tiny generated volume comparison.

A refactor that keeps behaviour must keep both checksums bit-identical. Run from the repository root:

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/determinism_check.py /tmp/determinism

The volume run uses the generated Decathlon-like folder of the tests (``tests/conftest.py``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import tiny_volume_config, write_volume_dataset  # noqa: E402


def atso(*arguments: str) -> None:
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "atso", *arguments], check=True, env=environment, stdout=subprocess.DEVNULL)


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    atso("demo", "--quick", "--quiet", "--out", str(out / "demo"))
    root = write_volume_dataset(out / "blobs", 10)
    config = out / "volumes.yaml"
    config.write_text(yaml.safe_dump(tiny_volume_config(root)))
    atso("compare", str(config), "--quiet", "--out", str(out / "volumes"))
    for name in ("demo", "volumes"):
        print(f"{checksum(out / name / 'metrics.jsonl')}  {out / name / 'metrics.jsonl'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/determinism"))
