"""Sections of ``benchmarks/throughput.py`` that stand on their own: volume prediction and contention.

Each returns ``(results, table rows)`` like the sections in ``throughput.py``; see its docstring.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from atso.config import VolumeConfig
from atso.config.data import VIEWS
from atso.data.samples import Sample
from atso.data.slicing import slice_volume
from atso.data.volume_slices import prepare_image, resize_slices
from atso.data.volumes import read_volume
from atso.inference.volume_predictor import VolumePredictor
from atso.models.views import build_view_networks
from atso.runtime.devices import resolve_device
from atso.runtime.threads import SPIN_COUNT

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "training_ratio": (">=", 0.9), "labeling_ratio": (">=", 0.9), "volume_prediction_ratio": (">=", 0.8),
    "fold_parallel_wall_ratio": ("<=", 0.6), "contention_slowdown": ("<=", 2.5),
}


def summary_figures(results: dict) -> dict:
    """The five figures of issue #19 from the sections' results (None where a section was skipped)."""
    def pick(section: str, key: str):
        return results.get(section, {}).get(key) if isinstance(results.get(section), dict) else None

    return {
        "training_ratio": pick("training", "ratio"),
        "labeling_ratio": pick("labeling", "ratio"),
        "volume_prediction_ratio": pick("volumes", "ratio"),
        "fold_parallel_wall_ratio": pick("folds", "wall_ratio"),
        "contention_slowdown": pick("contention", "slowdown"),
        "targets": {key: f"{op} {value}" for key, (op, value) in TARGETS.items()},
    }


# ----- volume prediction --------------------------------------------------------------------------
def _scans(args: argparse.Namespace, work: Path) -> tuple[list[Sample], str]:
    """The first ``--volume-count`` scans of ``--volumes``, or generated ones shaped like a left-atrium scan."""
    folder = Path(args.volumes) if args.volumes else None
    if folder is not None and folder.is_dir():
        files = sorted(folder.glob("*.nii.gz"))[: args.volume_count]
        if files:
            return [Sample(path.name[: -len(".nii.gz")], path) for path in files], str(folder)
    shape = (40, 32, 24) if args.quick else (176, 144, 88)
    rng = np.random.default_rng(7)
    (work / "scans").mkdir(exist_ok=True)
    samples = []
    for index in range(args.volume_count):
        path = work / "scans" / f"scan_{index:02d}.nii.gz"
        nib.save(nib.Nifti1Image(rng.normal(size=shape).astype(np.float32), np.diag([0.625, 0.625, 0.625, 1.0])), path)
        samples.append(Sample(path.name[: -len(".nii.gz")], path))
    return samples, f"generated {shape}"


def _bare_views(network_of, samples: list[Sample], settings: VolumeConfig, size: tuple[int, int], batch: int,
                device: torch.device) -> tuple[list, int]:
    """Every view's slices of every scan, cut and resized to the input size beforehand, in batches on the device."""
    work, slices_seen = [], 0
    for sample in samples:
        data = prepare_image(read_volume(sample.image, kind="image"), settings)
        for view in settings.views:
            slices = torch.from_numpy(slice_volume(data, view, settings.context))
            slices_seen += len(slices)
            batches = [resize_slices(slices[i : i + batch], size).to(device) for i in range(0, len(slices), batch)]
            work.append((network_of(view), batches))
    return work, slices_seen


def _time_bare(work: list, device: torch.device) -> float:
    with torch.inference_mode():
        started = time.perf_counter()
        for network, batches in work:
            for batch in batches:
                network(batch).argmax(dim=1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started


def _time_atso(predictor: VolumePredictor, samples: list[Sample]) -> float:
    started = time.perf_counter()
    for _ in predictor.predict(samples, {"m": ["m"]}):
        pass
    return time.perf_counter() - started


def volume_prediction(args: argparse.Namespace, work: Path) -> tuple[dict, list]:
    """VolumePredictor over three views (read, cut, forward, restack, fuse, back to the grid) against bare forwards."""
    samples, source = _scans(args, work)
    device = resolve_device(args.device)
    settings = VolumeConfig(views=list(VIEWS), context=1, intensity="none", fusion="majority",
                            slice_spacing=args.slice_spacing)
    options = {"base_channels": 8, "depth": 2} if args.quick else {"base_channels": 16, "depth": 4}  # left-atrium's
    torch.manual_seed(0)
    model = build_view_networks("small_unet", 2, 2 * settings.context + 1, settings.views, False, **options)
    size = (64, 64)  # left-atrium's input size
    predictor = VolumePredictor({"m": model}, settings, size, device, batch_size=args.batch, quiet=True)
    bare_work, slices = _bare_views(model.network, samples, settings, size, args.batch, device)
    _time_bare(bare_work[:1], device)  # warm-up
    atso_seconds = min(_time_atso(predictor, samples) for _ in range(args.repeats))
    bare_seconds = min(_time_bare(bare_work, device) for _ in range(args.repeats))
    result = {"scans": len(samples), "source": source, "slices": slices, "views": list(settings.views),
              "atso_seconds": atso_seconds, "bare_seconds": bare_seconds, "ratio": bare_seconds / atso_seconds,
              "target": 0.8}
    row = ("volume prediction, 3 views (slices/s)", f"{slices / atso_seconds:.1f}", f"{slices / bare_seconds:.1f}",
           f"{bare_seconds / atso_seconds:.2f}", ">= 0.80")
    return result, [row]


# ----- contention ---------------------------------------------------------------------------------
def _demo_command(out: Path, sets: list[str]) -> list[str]:
    command = [sys.executable, "-m", "atso", "demo", "--quick", "--quiet", "--force", "--out", str(out)]
    for assignment in sets:
        command += ["--set", assignment]
    return command


def _wall_times(commands: list[list[str]], environment: dict[str, str], logs: list[Path]) -> list[float]:
    """Start every command at once; the wall time of each from the common start to its own end."""
    started = time.perf_counter()
    handles = [open(log, "w") for log in logs]
    processes = [subprocess.Popen(c, env=environment, stdout=h, stderr=subprocess.STDOUT) for c, h in zip(commands, handles)]
    times: list[float | None] = [None] * len(processes)
    while any(t is None for t in times):
        for index, process in enumerate(processes):
            if times[index] is None and process.poll() is not None:
                times[index] = time.perf_counter() - started
        time.sleep(0.05)
    for handle in handles:
        handle.close()
    for process, log in zip(processes, logs):
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(process.args)} failed ({process.returncode}):\n{log.read_text()[-2000:]}")
    return [float(t) for t in times]  # type: ignore[arg-type]


def _environment(spin_count: str | None) -> dict[str, str]:
    """atso's defaults (auto threads, its own OpenMP waiting), or ``GOMP_SPINCOUNT=spin_count``; PYTHONPATH to this tree."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "ATSO_FAULT")}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    if spin_count is not None:
        environment["GOMP_SPINCOUNT"] = spin_count  # 300000 is libgomp's own default (atso before issue 19)
    return environment


def _solo_and_pair(work: Path, sets: list[str], spin_count: str | None) -> dict:
    tag = "default" if spin_count is None else f"spin-{spin_count}"
    environment = _environment(spin_count)
    (solo,) = _wall_times([_demo_command(work / f"{tag}-solo", sets)], environment, [work / f"{tag}-solo.log"])
    pair = _wall_times([_demo_command(work / f"{tag}-{n}", sets) for n in (1, 2)], environment,
                       [work / f"{tag}-{n}.log" for n in (1, 2)])
    threads = next((line.strip() for line in (work / f"{tag}-solo.log").read_text().splitlines()
                    if line.startswith("threads:")), None)
    return {"solo_seconds": solo, "pair_seconds": pair, "slowdown": max(pair) / solo, "threads": threads}


def contention(args: argparse.Namespace, work: Path) -> tuple[dict, list]:
    """``atso demo --quick`` alone, then two at once, each with atso's defaults: the slowdown of the slower.

    ``--contention-spincounts`` repeats it with other ``GOMP_SPINCOUNT`` values, so the choice of
    atso's default (:data:`atso.runtime.threads.SPIN_COUNT`) is seen against its neighbours: a demo
    alone is faster the longer idle threads spin, and two at once collapse when they spin too long.
    """
    result = _solo_and_pair(work, args.contention_set, None)
    result.update({"target": 2.5, "command": " ".join(_demo_command(Path("OUT"), args.contention_set)),
                   "spin_count": SPIN_COUNT})
    rows = [(f"demo beside a second demo vs alone (s), GOMP_SPINCOUNT={SPIN_COUNT}", f"{max(result['pair_seconds']):.1f}",
             f"{result['solo_seconds']:.1f}", f"{result['slowdown']:.2f}", "<= 2.50")]
    counts = list(args.contention_spincounts) + (["300000"] if args.contention_spinning else [])
    result["other_spin_counts"] = {}
    for count in counts:
        other = _solo_and_pair(work, args.contention_set, count)
        other["solo_cost_of_default"] = result["solo_seconds"] / other["solo_seconds"]  # > 1: the default is slower alone
        result["other_spin_counts"][count] = other
        rows.append((f"  the same with GOMP_SPINCOUNT={count} (s)", f"{max(other['pair_seconds']):.1f}",
                     f"{other['solo_seconds']:.1f}", f"{other['slowdown']:.2f}", ""))
    return result, rows
