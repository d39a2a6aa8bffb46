"""Throughput of atso against bare PyTorch, and the figures of issue #19, as ratios from one run.

Every figure is a ratio measured in one run, on one machine, so it travels between machines better
than an absolute number. The JSON's top level carries the five figures the issue asks for:

* ``training_ratio``: ``atso.training.trainer.Trainer`` on a TrainingDataset of PNG files on disk
  (decoded once, augmented per item) against a bare PyTorch loop with the same model, batch, input
  size, optimizer, schedule and loss on tensors already on the device. Target >= 0.9.
* ``labeling_ratio``: ``atso.inference.labeler.label_samples`` (read, predict, resize back, write a
  PNG per image, flushed once per call) against the forward pass and argmax on preloaded tensors, at
  the same batch, size and threads. Target >= 0.9.
* ``volume_prediction_ratio``: ``VolumePredictor.predict`` (read, normalise, slice three views,
  forward, resize back, restack, fuse, resample to the scan's grid) against the three views'
  forward passes and argmax over the same slices preloaded at the input size. Target >= 0.8. The
  left-atrium volumes when they are there (``--volumes``), else generated ones.
* ``fold_parallel_wall_ratio``: the wall time of one ATSO generation (2 students, their cross
  labeling, its evaluation) on 2 worker processes over the same jobs in order. Target <= 0.6 on 2
  free cores, with identical metrics.
* ``contention_slowdown``: ``atso demo --quick`` beside a second one, over its time alone (each
  process with atso's default threads and OpenMP waiting). Target <= 2.5. ``--contention-spincounts``
  measures the same at other ``GOMP_SPINCOUNT`` values, ``--contention-spinning`` at libgomp's own
  default (300000, what atso ran with before issue 19: slow, the pair collapses), so both what
  spinning gains alone and what it costs beside another process are seen.

Besides: labeling memory against |R| (peak RSS of 1k and 10k images: flat), and the CPU options of
item 5 as ratios against the default code: channels_last (training and labeling), inference_mode
against no_grad (bare forward), and with ``--compile`` ``torch.compile`` (training and labeling,
compile time reported apart).

    python benchmarks/throughput.py --out benchmarks/results/throughput-cpu.json   # CPU, quiet machine
    python benchmarks/throughput.py --quick --out /tmp/throughput.json           # smoke test
    python benchmarks/throughput.py --device cuda --amp-dtype bfloat16 --channels-last
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from atso.runtime.threads import prefer_brief_spinning

prefer_brief_spinning()  # as the atso command does, before PyTorch loads OpenMP: the timings are atso's defaults

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from atso import api  # noqa: E402
from atso.config import config_from_dict  # noqa: E402
from atso.data.datasets import IterationBatches, TrainingDataset, TrainingPair  # noqa: E402
from atso.data.description import load_description  # noqa: E402
from atso.data.samples import Sample  # noqa: E402
from atso.data.transforms import Augmentation  # noqa: E402
from atso.inference.labeler import label_samples  # noqa: E402
from atso.inference.predictor import Predictor  # noqa: E402
from atso.models import build_model  # noqa: E402
from atso.running.run_dir import RunDirectory  # noqa: E402
from atso.running.runner import job_threads  # noqa: E402
from atso.running.scheduler import WorkerPool, run_parallel  # noqa: E402
from atso.strategies.plan import build_plan  # noqa: E402
from atso.runtime.devices import resolve_device  # noqa: E402
from atso.runtime.threads import resolve_threads  # noqa: E402
from atso.training.trainer import AMP_DTYPES, Trainer, TrainingSettings, cross_entropy, poly_factor  # noqa: E402

DESCRIPTION = "camvid"  # 11 classes; raw mask value 11 is ignored
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput_sections import contention, summary_figures, volume_prediction  # noqa: E402


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
        channels_last=args.channels_last, compile=getattr(args, "compile_networks", False),
        num_workers=args.num_workers, quiet=True,
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
        compile=getattr(args, "compile_networks", False), quiet=True,
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


def bare_inference(args: argparse.Namespace, count: int, inference_mode: bool = True) -> float:
    """Images per second of the forward pass and argmax on preloaded tensors (as atso: under inference_mode)."""
    with torch.inference_mode() if inference_mode else torch.no_grad():
        return _bare_inference(args, count)


def _bare_inference(args: argparse.Namespace, count: int) -> float:
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
    setting = resolve_threads("auto", 2)  # each worker's share of the cores
    every_job = job_threads(plan, setting)
    per_job = {job.id: every_job[job.id] for job in generation}
    timings = {}
    # On 2 workers, started beforehand as a run starts them (their start-up is paid once per run);
    # in order with atso's default threads (all the cores: what a user without --workers gets); and in
    # order at the counts the workers used, job by job (CPU sums are bit-identical only at equal counts).
    for name in ("parallel", "sequential", "sequential_same_threads"):
        run_dir = RunDirectory(work / f"fold-{name}")
        shutil.copytree(base, run_dir.path)
        if name == "parallel":
            with WorkerPool([args.device, args.device], setting.count, api.run_job) as pool:
                started = time.perf_counter()
                run_parallel(run_dir, generation, pool, log=lambda line: None, job_threads=per_job)
                timings[name] = time.perf_counter() - started
            continue
        started = time.perf_counter()
        for job in generation:
            threads = per_job[job.id] if name == "sequential_same_threads" else None
            api.run_job(run_dir.path, job.id, log=lambda line: None, threads=threads)
        timings[name] = time.perf_counter() - started
    metrics = {name: (work / f"fold-{name}/jobs/atso/g1/eval/metrics.json").read_text() for name in timings}
    threads = {name: {job: entry.get("threads") for job, entry in RunDirectory(work / f"fold-{name}").finished_jobs().items()
                      if job in per_job} for name in timings}
    return {"jobs": [job.id for job in generation], "student_iterations": args.student_iterations, "threads": threads,
            "sequential_seconds": timings["sequential"], "parallel_seconds": timings["parallel"],
            "sequential_same_threads_seconds": timings["sequential_same_threads"],
            "speedup": timings["sequential"] / timings["parallel"],
            "wall_ratio": timings["parallel"] / timings["sequential"], "target": 0.6,
            "same_metrics": metrics["parallel"] == metrics["sequential_same_threads"],
            "same_metrics_as_default_threads": metrics["parallel"] == metrics["sequential"]}


# ----- CPU options (item 5) ----------------------------------------------------------------------
def _variant(args: argparse.Namespace, **changes) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **changes})


def compiled_labeling(args: argparse.Namespace, samples: list[Sample], work: Path) -> tuple[float, float]:
    """Labeling with runtime.compile: (images per second once compiled, seconds spent compiling)."""
    description = load_description(DESCRIPTION)
    predictor = _predictor(_variant(args, compile_networks=True), fresh_model(args, description.num_classes))
    seconds = []
    for attempt in range(2):  # the first call compiles; the second runs what was compiled
        out = work / f"compiled-labels-{attempt}"
        started = time.perf_counter()
        label_samples(predictor, samples, ["teacher"], out, description.color_palette(), description.ignore_index)
        seconds.append(time.perf_counter() - started)
        shutil.rmtree(out)
    return len(samples) / seconds[1], seconds[0] - seconds[1]


def cpu_options(args: argparse.Namespace, work: Path, train_samples: list[Sample]) -> tuple[dict, list]:
    """channels_last, inference_mode and (--compile) torch.compile, each as a ratio against the default code."""
    pairs = [TrainingPair(s.id, s.image, s.mask, False) for s in train_samples]  # type: ignore[arg-type]
    label_set = write_samples(work / "options-unlabeled", args.label_images, tuple(args.size), seed=6, masks=False)
    best = lambda measure: max(measure() for _ in range(args.repeats))  # noqa: E731
    flipped = _variant(args, channels_last=not args.channels_last)
    train = {"default": best(lambda: atso_training(args, pairs, work)),
             "channels_last": best(lambda: atso_training(flipped, pairs, work))}
    label = {"default": best(lambda: atso_labeling(args, label_set, work / "labels")),
             "channels_last": best(lambda: atso_labeling(flipped, label_set, work / "labels"))}
    forward = {"no_grad": best(lambda: bare_inference(args, args.label_images, inference_mode=False)),
               "inference_mode": best(lambda: bare_inference(args, args.label_images, inference_mode=True))}
    name = "channels_last" if not args.channels_last else "contiguous (channels_last off)"
    result: dict = {
        "channels_last_is_the_variant": not args.channels_last,
        "channels_last": {"training_ratio": train["channels_last"] / train["default"],
                          "labeling_ratio": label["channels_last"] / label["default"]},
        "inference_mode": {"ratio": forward["inference_mode"] / forward["no_grad"]},
        "images_per_second": {"training": train, "labeling": label, "bare_forward": forward},
    }
    rows = [_row(f"{name} vs default, training (img/s)", train["channels_last"], train["default"],
                 train["channels_last"] / train["default"], "> 1 to keep"),
            _row(f"{name} vs default, labeling (img/s)", label["channels_last"], label["default"],
                 label["channels_last"] / label["default"], "> 1 to keep"),
            _row("inference_mode vs no_grad, bare forward (img/s)", forward["inference_mode"], forward["no_grad"],
                 forward["inference_mode"] / forward["no_grad"], ">= 1")]
    if args.compile_option:
        compiled_rate, compile_seconds = compiled_labeling(args, label_set, work)
        compiled_train = atso_training(_variant(args, compile_networks=True), pairs, work)  # compiling included
        result["compile"] = {"labeling_ratio": compiled_rate / label["default"], "labeling_compile_seconds": compile_seconds,
                             "training_ratio_including_compile": compiled_train / train["default"]}
        rows.append(_row("torch.compile vs default, labeling (img/s)", compiled_rate, label["default"],
                         compiled_rate / label["default"], f"compiling {compile_seconds:.0f} s"))
        rows.append(_row("torch.compile vs default, training incl. compiling (img/s)", compiled_train,
                         train["default"], compiled_train / train["default"], "-"))
    return result, rows


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
    parser.add_argument("--volumes", default=str(ROOT.parent / "shared/datasets/left-atrium/imagesTr"),
                        help="folder of .nii.gz scans to predict (default: the left-atrium release; generated if absent)")
    parser.add_argument("--volume-count", type=int, default=4, help="scans predicted per measurement")
    parser.add_argument("--slice-spacing", type=float, help="data.volume.slice_spacing: resample before slicing")
    parser.add_argument("--contention-set", action="append", default=[], metavar="KEY=VALUE",
                        help="--set for both demos of the contention measurement")
    parser.add_argument("--contention-spinning", action="store_true",
                        help="also time the demos with OpenMP's default spinning (GOMP_SPINCOUNT=300000): slow")
    parser.add_argument("--contention-spincounts", nargs="*", default=[], metavar="N",
                        help="also time the demos at these GOMP_SPINCOUNT values")
    parser.add_argument("--compile", dest="compile_option", action="store_true",
                        help="also time torch.compile (runtime.compile) for training and labeling")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs of each timing")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loader processes (runtime.num_workers)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="no autocast on CUDA")
    parser.add_argument("--amp-dtype", choices=sorted(AMP_DTYPES), default="bfloat16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke test")
    parser.add_argument("--out", help="write the results as JSON here (benchmarks/results/throughput-cpu.json)")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-folder", help=argparse.SUPPRESS)
    parser.add_argument("--rss-count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.compile_networks = False  # what the measurements run with; the options section turns it on
    if args.quick:
        args.iterations, args.label_images, args.rss_counts = 8, 16, [100, 1000]
        args.student_iterations, args.repeats, args.volume_count = 5, 1, 1
        args.volumes = ""  # a small generated scan
        args.contention_set = ["train.iterations=4", "train.student_iterations=2", *args.contention_set]
    return args


def _row(name: str, a: float, b: float, ratio: float, target: str, digits: int = 1) -> tuple[str, ...]:
    return (name, f"{a:.{digits}f}", f"{b:.{digits}f}", f"{ratio:.2f}", target)


def section_training(args: argparse.Namespace, work: Path, train_samples: list[Sample]) -> tuple[dict, list]:
    bare_training(args)  # warm-up: kernels, allocator
    pairs = [TrainingPair(s.id, s.image, s.mask, False) for s in train_samples]  # type: ignore[arg-type]
    atso_rate = max(atso_training(args, pairs, work) for _ in range(args.repeats))
    bare_rate = max(bare_training(args) for _ in range(args.repeats))
    # How far ahead of the bare model the data pipeline alone runs: below 1, the device waits for data.
    loading_rate = max(atso_loading(args, pairs) for _ in range(args.repeats))
    result = {"atso_images_per_second": atso_rate, "bare_images_per_second": bare_rate,
              "ratio": atso_rate / bare_rate, "target": 0.9, "loading_images_per_second": loading_rate}
    rows = [_row("training (img/s)", atso_rate, bare_rate, atso_rate / bare_rate, ">= 0.90"),
            _row(f"data pipeline alone, {args.num_workers} loader processes (img/s)", loading_rate, bare_rate,
                 loading_rate / bare_rate, "> 1")]
    return result, rows


def section_labeling(args: argparse.Namespace, work: Path) -> tuple[dict, list]:
    label_set = write_samples(work / "unlabeled", args.label_images, tuple(args.size), seed=2, masks=False)
    atso_rate = max(atso_labeling(args, label_set, work / "labels") for _ in range(args.repeats))
    bare_rate = max(bare_inference(args, args.label_images) for _ in range(args.repeats))
    result = {"atso_images_per_second": atso_rate, "bare_images_per_second": bare_rate,
              "ratio": atso_rate / bare_rate, "target": 0.9}
    return result, [_row("labeling (img/s)", atso_rate, bare_rate, atso_rate / bare_rate, ">= 0.90")]


def section_memory(args: argparse.Namespace, work: Path) -> tuple[dict, list]:
    small, large = labeling_memory(args, work, tuple(args.rss_counts))
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    rows = [_row(f"peak RSS labeling {small['images']} vs {large['images']} (MiB)", small["peak_rss_mib"],
                 large["peak_rss_mib"], ratio, "<= 1.10", digits=0)]
    if small["growth_while_labeling_mib"] is not None and large["growth_while_labeling_mib"] is not None:
        rows.append(("  peak growth above RSS before labeling (MiB)", f"{small['growth_while_labeling_mib']:.1f}",
                     f"{large['growth_while_labeling_mib']:.1f}", "", "flat"))
    return {"small": small, "large": large, "ratio": ratio, "target": 1.1}, rows


def section_folds(args: argparse.Namespace, work: Path) -> tuple[dict, list]:
    folds = fold_parallel(args, work)
    row = ("ATSO generation, 2 workers (A) vs in order (B), wall s", f"{folds['parallel_seconds']:.1f}",
           f"{folds['sequential_seconds']:.1f}", f"{folds['wall_ratio']:.2f}",
           "<= 0.60, " + ("same metrics" if folds["same_metrics"] else "METRICS DIFFER"))
    return folds, [row]


SECTIONS = ("training", "labeling", "memory", "volumes", "folds", "contention", "options")


def _commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+uncommitted changes" if dirty else "")


def _table(rows: list[tuple[str, ...]]) -> str:
    header = ("measurement", "atso / A", "bare / B", "ratio", "target")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    table = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in [header, *rows]]
    table.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.rss_child:
        rss_child(args)
        return 0
    device = resolve_device(args.device)
    results: dict = {
        "command": " ".join([Path(sys.executable).name, *(sys.argv if argv is None else [__file__, *argv])]),
        "commit": _commit(),
        "machine": {
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT"),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        },
        "settings": {key: getattr(args, key) for key in (
            "device", "model", "size", "batch", "iterations", "label_images", "rss_counts", "student_iterations",
            "volumes", "volume_count", "slice_spacing", "contention_set", "repeats", "num_workers", "amp",
            "amp_dtype", "channels_last", "quick")},
    }
    rows: list[tuple[str, ...]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="atso-throughput-") as temporary:
        work = Path(temporary)
        train_samples = write_samples(work / "train", max(4 * args.batch, 32), tuple(args.size), seed=1)
        sections = {
            "training": lambda: section_training(args, work, train_samples),
            "labeling": lambda: section_labeling(args, work),
            "memory": lambda: section_memory(args, work),
            "volumes": lambda: volume_prediction(args, work),
            "folds": lambda: section_folds(args, work),
            "contention": lambda: contention(args, work),
            "options": lambda: cpu_options(args, work, train_samples),
        }
        for name in SECTIONS:
            if name not in args.skip:
                results[name], section_rows = sections[name]()
                rows += section_rows
    results["seconds"] = round(time.perf_counter() - started, 1)
    results.update(summary_figures(results))
    results["table"] = _table(rows)
    print(results["table"])
    print(json.dumps({key: results[key] for key in summary_figures(results)}, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
