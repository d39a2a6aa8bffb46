"""Throughput of atso against bare PyTorch, labeling memory against |R|, and fold-parallel wall time.

Every figure is a ratio measured in one run, on one machine, so it travels between machines better
than an absolute number:

* training: ``atso.training.trainer.train`` on a TrainingDataset of PNG files on disk (decoded once,
  augmented per item) against a bare PyTorch loop with the same model, batch, input size, optimizer,
  schedule and loss on tensors already in memory on the device. Target: atso >= 90% of bare.
* labeling: ``atso.inference.labeler.label_samples`` (read, predict, resize back, write a PNG per
  image) against the model's forward pass and argmax on preloaded tensors.
* memory: peak RSS of a child process labeling 1k and one labeling 10k small images. Target: flat.
* fold parallelism: one ATSO generation (2 students, their cross labeling, its evaluation) on 2
  worker processes against the same jobs one after another.

    python benchmarks/throughput.py --out throughput.json        # CPU, a few minutes
    python benchmarks/throughput.py --quick                       # smoke test
    python benchmarks/throughput.py --device cuda --amp-dtype bfloat16 --channels-last
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atso import api
from atso.config import config_from_dict
from atso.data.datasets import IterationBatches, TrainingDataset, TrainingPair
from atso.data.description import load_description
from atso.data.samples import Sample
from atso.data.transforms import Augmentation
from atso.inference.labeler import label_samples
from atso.inference.predictor import Predictor
from atso.models import build_model
from atso.running.run_dir import RunDirectory
from atso.running.scheduler import run_parallel
from atso.strategies.plan import build_plan
from atso.runtime.devices import resolve_device
from atso.training.trainer import AMP_DTYPES, Trainer, TrainingSettings, cross_entropy, poly_factor

DESCRIPTION = "camvid"  # 11 classes; raw mask value 11 is ignored


def write_samples(folder: Path, count: int, size: tuple[int, int], seed: int, masks: bool = True) -> list[Sample]:
    """``count`` generated RGB PNGs (blocks on noise) and, with ``masks``, CamVid-style index masks beside them."""
    rng = np.random.default_rng(seed)
    images, annotations = folder, folder.parent / f"{folder.name}annot"
    images.mkdir(parents=True, exist_ok=True)
    if masks:
        annotations.mkdir(parents=True, exist_ok=True)
    height, width = size
    samples = []
    for index in range(count):
        labels = np.kron(rng.integers(0, 12, size=(4, 4)), np.ones((height // 4 + 1, width // 4 + 1), dtype=np.int64))
        labels = labels[:height, :width].astype(np.uint8)
        image = (rng.integers(0, 60, size=(height, width, 3)) + labels[..., None] * 16).astype(np.uint8)
        name = f"{folder.name}_{index:05d}.png"
        Image.fromarray(image).save(images / name)
        if masks:
            Image.fromarray(labels).save(annotations / name)
        samples.append(Sample(name[:-4], images / name, annotations / name if masks else None))
    return samples


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(args.model, num_classes)


# ----- training -----------------------------------------------------------------------------------
def atso_training(args: argparse.Namespace, pairs: list[TrainingPair], work: Path) -> float:
    """Images per second of atso's training loop, data read from PNG files."""
    description = load_description(DESCRIPTION)
    dataset = TrainingDataset(
        pairs, description, tuple(args.size), Augmentation(ignore_index=description.ignore_index),
        batch_size=args.batch, seed=0,
    )
    settings = TrainingSettings(
        iterations=args.iterations, device=args.device, amp=args.amp, amp_dtype=args.amp_dtype,
        channels_last=args.channels_last, num_workers=args.num_workers, quiet=True,
    )
    model = fresh_model(args, description.num_classes)
    state = work / "state.pt"
    state.unlink(missing_ok=True)
    device = resolve_device(args.device)
    synchronize(device)
    started = time.perf_counter()
    Trainer(model, dataset, settings, state, "benchmark").run()
    synchronize(device)
    return args.iterations * args.batch / (time.perf_counter() - started)


def atso_loading(args: argparse.Namespace, pairs: list[TrainingPair]) -> float:
    """Images per second atso's data pipeline alone delivers (decode once, augment per item, collate)."""
    description = load_description(DESCRIPTION)
    dataset = TrainingDataset(
        pairs, description, tuple(args.size), Augmentation(ignore_index=description.ignore_index),
        batch_size=args.batch, seed=0,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=IterationBatches(0, args.iterations, args.batch), num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
    )
    started = time.perf_counter()
    for _ in loader:
        pass
    return args.iterations * args.batch / (time.perf_counter() - started)


def bare_training(args: argparse.Namespace) -> float:
    """Images per second of a plain PyTorch loop: same model, optimizer, schedule and loss; data on the device."""
    description = load_description(DESCRIPTION)
    device = resolve_device(args.device)
    model = fresh_model(args, description.num_classes).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.preserve_format
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    height, width = args.size
    batches = 4
    images = torch.randn(batches, args.batch, 3, height, width, device=device)
    targets = torch.randint(0, description.num_classes, (batches, args.batch, height, width), device=device)
    defaults = TrainingSettings(iterations=args.iterations)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=defaults.lr, momentum=defaults.momentum, weight_decay=defaults.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: poly_factor(it, args.iterations, defaults.poly_power)
    )
    loss_fn = cross_entropy(description.ignore_index)
    use_amp = args.amp and device.type == "cuda"
    dtype = AMP_DTYPES[args.amp_dtype]
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)
    model.train()
    synchronize(device)
    started = time.perf_counter()
    for iteration in range(args.iterations):
        batch = images[iteration % batches].contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
            logits = model(batch)
        loss = loss_fn(logits, targets[iteration % batches])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    synchronize(device)
    return args.iterations * args.batch / (time.perf_counter() - started)


# ----- labeling -----------------------------------------------------------------------------------
def _predictor(args: argparse.Namespace, model: torch.nn.Module) -> Predictor:
    return Predictor(
        {"teacher": model}, tuple(args.size), resolve_device(args.device), batch_size=args.batch,
        num_workers=args.num_workers, amp=args.amp, amp_dtype=args.amp_dtype, channels_last=args.channels_last,
        quiet=True,
    )


def atso_labeling(args: argparse.Namespace, samples: list[Sample], out: Path) -> float:
    """Images per second of label_samples: read, predict, resize back, write one PNG each."""
    description = load_description(DESCRIPTION)
    predictor = _predictor(args, fresh_model(args, description.num_classes))
    shutil.rmtree(out, ignore_errors=True)
    device = resolve_device(args.device)
    synchronize(device)
    started = time.perf_counter()
    label_samples(predictor, samples, ["teacher"], out, description.color_palette(), description.ignore_index)
    synchronize(device)
    return len(samples) / (time.perf_counter() - started)


@torch.no_grad()
def bare_inference(args: argparse.Namespace, count: int) -> float:
    """Images per second of the forward pass and argmax on preloaded tensors."""
    description = load_description(DESCRIPTION)
    device = resolve_device(args.device)
    model = fresh_model(args, description.num_classes).to(device).eval()
    memory_format = torch.channels_last if args.channels_last else torch.preserve_format
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    height, width = args.size
    batches = [torch.randn(min(args.batch, count - start), 3, height, width, device=device).contiguous(memory_format=memory_format)
               for start in range(0, count, args.batch)]
    use_amp = args.amp and device.type == "cuda"
    synchronize(device)
    started = time.perf_counter()
    for batch in batches:
        with torch.autocast(device.type, dtype=AMP_DTYPES[args.amp_dtype], enabled=use_amp):
            model(batch).argmax(dim=1)
    synchronize(device)
    return count / (time.perf_counter() - started)


# ----- memory against |R| -------------------------------------------------------------------------
def _status_mib(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status (Linux), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Start the peak-RSS mark (VmHWM) afresh from the current RSS (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_child(args: argparse.Namespace) -> None:
    """In a child process: label the first ``--rss-count`` images of ``--rss-folder``; print peak RSS as JSON."""
    torch.set_num_threads(1)
    folder = Path(args.rss_folder)
    files = sorted(folder.glob("*.png"))[: args.rss_count]
    samples = [Sample(path.stem, path) for path in files]
    description = load_description(DESCRIPTION)
    model = fresh_model(args, description.num_classes)
    predictor = Predictor({"teacher": model}, (32, 40), torch.device("cpu"), batch_size=16, quiet=True)
    out = Path(args.rss_out)
    # Imports peak above what labeling needs, so the peak while labeling is measured from a fresh mark.
    # (ru_maxrss would not do: it keeps the RSS the process had when it was forked from its parent.)
    setup_peak = _status_mib("VmHWM")
    resettable = _reset_peak_rss()
    before = _status_mib("VmRSS")
    started = time.perf_counter()
    label_samples(predictor, samples, ["teacher"], out, description.color_palette(), description.ignore_index)
    seconds = time.perf_counter() - started
    written = sum(1 for _ in out.glob("*.png"))
    labeling_peak = _status_mib("VmHWM") if resettable else None
    if setup_peak is None:  # not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    else:
        peak = max(setup_peak, labeling_peak or 0.0)
    print(json.dumps({
        "images": len(samples), "written": written, "peak_rss_mib": peak,
        "rss_before_labeling_mib": before, "peak_rss_while_labeling_mib": labeling_peak,
        "growth_while_labeling_mib": labeling_peak - before if labeling_peak and before else None,
        "seconds": seconds,
    }))


def labeling_memory(args: argparse.Namespace, work: Path, counts: tuple[int, int]) -> list[dict]:
    """Peak RSS of one child process per reference-set size (each child labels from scratch)."""
    folder = work / "reference"
    write_samples(folder, counts[-1], (32, 40), seed=3, masks=False)
    results = []
    for count in counts:
        out = work / f"labels-{count}"
        command = [sys.executable, __file__, "--rss-child", "--rss-folder", str(folder), "--rss-count", str(count),
                   "--rss-out", str(out), "--model", args.model]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        shutil.rmtree(out)
    return results


# ----- fold parallelism ---------------------------------------------------------------------------
def fold_parallel(args: argparse.Namespace, work: Path) -> dict:
    """Wall time of one ATSO generation's jobs on 2 workers against the same jobs in order."""
    root = work / "folds"
    write_samples(root / "train", 24, (64, 80), seed=4)
    write_samples(root / "val", 8, (64, 80), seed=5)
    raw = {
        "data": {"description": DESCRIPTION, "train": {"root": str(root), "split": "train"},
                 "test": {"root": str(root), "split": "val"}, "labeled_count": 8, "input_size": [64, 80]},
        "model": {"name": "small_unet", "options": {"base_channels": 8}},
        "train": {"iterations": 10, "student_iterations": args.student_iterations, "batch_size": 8,
                  "checkpoint_every": 1000},
        "teacher_student": {"strategy": "atso", "generations": 1, "folds": 2},
        "runtime": {"device": args.device, "quiet": True},
    }
    config = config_from_dict(raw)
    base = work / "fold-base"
    RunDirectory(base).prepare(config)
    for job_id in ("g0/m0", "g0/labels", "g0/eval"):
        api.run_job(base, job_id, log=lambda line: None)
    plan = build_plan("atso", 1, 2)
    generation = [job for job in plan.jobs if job.id.startswith("atso/g1/")]
    timings = {}
    for name in ("sequential", "parallel"):
        run_dir = RunDirectory(work / f"fold-{name}")
        shutil.copytree(base, run_dir.path)
        started = time.perf_counter()
        if name == "sequential":
            for job in generation:
                api.run_job(run_dir.path, job.id, log=lambda line: None)
        else:
            run_parallel(run_dir, generation, [args.device, args.device], api.run_job, log=lambda line: None)
        timings[name] = time.perf_counter() - started
    same = (work / "fold-sequential/jobs/atso/g1/eval/metrics.json").read_text() == (
        work / "fold-parallel/jobs/atso/g1/eval/metrics.json").read_text()
    return {"jobs": [job.id for job in generation], "student_iterations": args.student_iterations,
            "sequential_seconds": timings["sequential"], "parallel_seconds": timings["parallel"],
            "speedup": timings["sequential"] / timings["parallel"], "same_metrics": same}


# ----- main ---------------------------------------------------------------------------------------
def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--model", default="small_unet", help="a name from atso.models.available_models()")
    parser.add_argument("--size", type=int, nargs=2, default=[96, 128], metavar=("H", "W"), help="input size")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=60, help="training iterations per measurement")
    parser.add_argument("--label-images", type=int, default=96, help="images labeled per measurement")
    parser.add_argument("--rss-counts", type=int, nargs=2, default=[1000, 10000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--student-iterations", type=int, default=200, help="fold-parallel students' iterations")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs of each timing")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loader processes (runtime.num_workers)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="no autocast on CUDA")
    parser.add_argument("--amp-dtype", choices=sorted(AMP_DTYPES), default="bfloat16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--skip", nargs="*", default=[], choices=["training", "labeling", "memory", "folds"])
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke test")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-folder", help=argparse.SUPPRESS)
    parser.add_argument("--rss-count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.iterations, args.label_images, args.rss_counts = 8, 16, [100, 1000]
        args.student_iterations, args.repeats = 5, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.rss_child:
        rss_child(args)
        return 0
    device = resolve_device(args.device)
    results: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
        "settings": {key: getattr(args, key) for key in (
            "device", "model", "size", "batch", "iterations", "label_images", "rss_counts", "student_iterations",
            "repeats", "num_workers", "amp", "amp_dtype", "channels_last", "quick")},
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="atso-throughput-") as temporary:
        work = Path(temporary)
        if "training" not in args.skip or "labeling" not in args.skip:
            train_samples = write_samples(work / "train", max(4 * args.batch, 32), tuple(args.size), seed=1)
        if "training" not in args.skip:
            bare_training(args)  # warm-up: kernels, allocator
            pairs = [TrainingPair(s.id, s.image, s.mask, False) for s in train_samples]  # type: ignore[arg-type]
            atso_rate = max(atso_training(args, pairs, work) for _ in range(args.repeats))
            bare_rate = max(bare_training(args) for _ in range(args.repeats))
            results["training"] = {"atso_images_per_second": atso_rate, "bare_images_per_second": bare_rate,
                                   "ratio": atso_rate / bare_rate, "target": 0.9}
            rows.append(("training (img/s)", f"{atso_rate:.1f}", f"{bare_rate:.1f}", f"{atso_rate / bare_rate:.2f}", ">= 0.90"))
            # How far ahead of the bare model the data pipeline alone runs: below 1, the device waits for data.
            loading_rate = max(atso_loading(args, pairs) for _ in range(args.repeats))
            results["training"]["loading_images_per_second"] = loading_rate
            rows.append((f"data pipeline alone, {args.num_workers} loader processes (img/s)", f"{loading_rate:.1f}",
                         f"{bare_rate:.1f}", f"{loading_rate / bare_rate:.2f}", "> 1"))
        if "labeling" not in args.skip:
            label_set = write_samples(work / "unlabeled", args.label_images, tuple(args.size), seed=2, masks=False)
            atso_rate = max(atso_labeling(args, label_set, work / "labels") for _ in range(args.repeats))
            bare_rate = max(bare_inference(args, args.label_images) for _ in range(args.repeats))
            results["labeling"] = {"atso_images_per_second": atso_rate, "bare_images_per_second": bare_rate,
                                   "ratio": atso_rate / bare_rate}
            rows.append(("labeling (img/s)", f"{atso_rate:.1f}", f"{bare_rate:.1f}", f"{atso_rate / bare_rate:.2f}", "-"))
        if "memory" not in args.skip:
            small, large = labeling_memory(args, work, tuple(args.rss_counts))
            ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
            results["labeling_memory"] = {"small": small, "large": large, "ratio": ratio, "target": 1.1}
            rows.append((f"peak RSS labeling {small['images']} vs {large['images']} (MiB)",
                         f"{small['peak_rss_mib']:.0f}", f"{large['peak_rss_mib']:.0f}", f"{ratio:.2f}", "<= 1.10"))
            if small["growth_while_labeling_mib"] is not None and large["growth_while_labeling_mib"] is not None:
                rows.append(("  peak growth above RSS before labeling (MiB)", f"{small['growth_while_labeling_mib']:.1f}",
                             f"{large['growth_while_labeling_mib']:.1f}", "", "flat"))
        if "folds" not in args.skip:
            folds = fold_parallel(args, work)
            results["fold_parallel"] = folds
            rows.append(("ATSO generation, 2 workers vs in order (s)", f"{folds['parallel_seconds']:.1f}",
                         f"{folds['sequential_seconds']:.1f}", f"{folds['speedup']:.2f}x",
                         "same metrics" if folds["same_metrics"] else "METRICS DIFFER"))
    header = ("measurement", "atso / A", "bare / B", "ratio", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    table = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in [header, *rows]]
    table.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    results["table"] = "\n".join(table)
    print(results["table"])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
