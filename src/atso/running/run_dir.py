"""The run directory: resolved config, split list files, one folder per job, and the manifest.

Layout::

    RUN_DIR/
      config.yaml           the resolved config (refused if a later run brings a different one)
      manifest.json         finished jobs, their outputs and wall times
      plan.txt              the plan as a table
      splits/               labeled.txt, reference_fold_K.txt, test.txt ('image [mask]' lines)
      jobs/<job id>/        model.pt (+ state.pt while training), labels/*.png, metrics.json,
                            .lock (held by the process running the job); with teacher_student.reliability
                            a teacher's snapshot-K.pt (+ weights-K[-view].pt while training) and a
                            labeling's labels/reliability.json
      jobs/g0/m0/test_labels/  M0's predictions of the test set, written by the first evaluation that
                            predicts M0 and read by the later ones (complete.json written last)
      metrics.jsonl         one line per evaluation job, in plan order
      report/               index.html (self-contained) and summary.md + its images ('atso report')
      tensorboard/          event files when runtime.tensorboard is on: <job id>/ per training job, eval/<strategy>/
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from pathlib import Path
from typing import Any, Iterator


from atso.config import Config, config_from_dict, dump_config, read_yaml
from atso.errors import AtsoError
from atso.storage import atomic_write_json, atomic_write_text, is_temporary_file, read_json, remove_temporary_files


class RunDirectory:
    """Paths and the manifest of one run; every file in it is written atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def splits(self) -> Path:
        return self.path / "splits"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    def job_dir(self, job_id: str) -> Path:
        return self.path / "jobs" / job_id

    def model_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "model.pt"

    def snapshot_path(self, job_id: str, index: int) -> Path:
        """A model's ``index``-th earlier checkpoint (teacher_student.reliability), loadable like its model file."""
        return self.job_dir(job_id) / f"snapshot-{index}.pt"

    def labels_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "labels"

    def reliability_path(self, labeling: str) -> Path:
        """A labeling's stability score per sample (teacher_student.reliability): sample id -> score."""
        return self.labels_dir(labeling) / "reliability.json"

    def metrics_file(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "metrics.json"

    def prepare(self, config: Config, compare: bool = False, force: bool = False, m0_only: bool = False) -> None:
        """Create the folder and save the config; refuse a different config unless ``force``.

        Temporary files that killed writes left behind are removed here. (An ``atso job`` worker still
        writing into the folder would see its write fail with a clear error; its job stays unfinished.)
        """
        self.check_owned()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AtsoError(f"{self.path}: cannot create the run directory ({exc.strerror or exc})") from exc
        if self.config_path.is_file():
            saved = self.load_config()
            if saved.fingerprint() != config.fingerprint() and not force:
                changed = changed_keys(saved.to_dict(), config.to_dict())
                raise AtsoError(
                    f"{self.config_path}: this run directory was made with a different config "
                    f"(changed: {', '.join(changed[:5])}); use a new --out, or --force to continue with the new one"
                )
        self.remove_temporary_files()
        self.verify_finished_models()
        atomic_write_text(self.config_path, dump_config(config))
        with self.manifest() as manifest:
            manifest["fingerprint"] = config.fingerprint()
            manifest["compare"] = compare or bool(manifest.get("compare"))
            # ``atso train`` (M0 alone) until a run of a strategy continues in the same folder.
            manifest["m0_only"] = m0_only and bool(manifest.get("m0_only", True))

    def check_owned(self) -> None:
        """Refuse a folder that is not atso's: atso writes, and deletes its temporary files, only in its own.

        A run directory is new, empty, holds ``config.yaml``, or holds only what a run killed during its
        very first write leaves (its lock file and atso's temporary files).

        Raises:
            AtsoError: the path is a file, or a non-empty folder that is not an atso run directory.
        """
        if not self.path.exists() and not self.path.is_symlink():
            return
        if not self.path.is_dir():
            raise AtsoError(f"{self.path}: exists and is not a folder, so it cannot be the run directory; choose another --out")
        if self.config_path.is_file():
            return
        foreign = sorted(
            entry.name for entry in self.path.iterdir() if entry.name != ".manifest.lock" and not is_temporary_file(entry)
        )
        if foreign:
            raise AtsoError(
                f"{self.path}: not empty and not an atso run directory (no config.yaml; holds {', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); atso writes only into its own run directories: "
                "give a new or empty --out"
            )

    def remove_temporary_files(self) -> list[Path]:
        """Delete atso's temporary files where atso writes: the top folder, ``splits/``, ``jobs/``, ``report/``."""
        removed = remove_temporary_files(self.path)
        for folder in (self.splits, self.path / "jobs", self.report_dir):
            removed += remove_temporary_files(folder, recursive=True)
        return removed

    def verify_finished_models(self) -> None:
        """Read each finished job's ``model.pt`` (and snapshots) once, so a corrupt one stops a resume before any work starts.

        Raises:
            AtsoError: a model file recorded as finished is missing, truncated or not atso's (the line names it).
        """
        from atso.checkpoints import verify_model_file

        for job_id, record in self.finished_jobs().items():
            outputs = (record.get("outputs") or {}) if isinstance(record, dict) else {}
            model, snapshots = outputs.get("model"), outputs.get("snapshots") or []
            for relative in ([model] if isinstance(model, str) else []) + [s for s in snapshots if isinstance(s, str)]:
                path = self.path / relative
                try:
                    verify_model_file(path)
                except AtsoError as exc:
                    raise AtsoError(
                        f"{exc}; job {job_id} is recorded finished: restore its {path.name}, or start again with a new --out"
                    ) from exc

    def load_config(self) -> Config:
        """The config saved in this run directory."""
        if not self.config_path.is_file():
            raise AtsoError(f"{self.path}: not a run directory (no config.yaml); run 'atso run' first")
        data = read_yaml(self.config_path)
        return config_from_dict(data, source=str(self.config_path), base_dir=self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run directory's lock: one process at a time writes the manifest and metrics.jsonl."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = open(self.path / ".manifest.lock", "a+")
        except OSError as exc:
            raise AtsoError(
                f"{self.path}: cannot write the manifest ({exc.strerror or exc}); fix permissions, then resume"
            ) from exc
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def manifest(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write the manifest under the run directory's lock, so concurrent jobs do not clash."""
        with self.locked():
            manifest = read_json(self.manifest_path) if self.manifest_path.is_file() else {"jobs": {}}
            yield manifest
            atomic_write_json(self.manifest_path, manifest)

    @contextlib.contextmanager
    def job_lock(self, job_id: str) -> Iterator[None]:
        """Hold ``jobs/<id>/.lock`` while running a job, so two processes never run the same job.

        The lock is the kernel's (``flock``): it goes with the process, so a killed job leaves nothing
        to clean up. The file itself stays; removing it would let two processes lock different files.

        Raises:
            AtsoError: another process holds the job's lock.
        """
        folder = self.job_dir(job_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = open(folder / ".lock", "a+")
        except OSError as exc:
            raise AtsoError(f"{folder}: cannot lock this job ({exc.strerror or exc}); fix permissions, then resume") from exc
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AtsoError(
                    f"job {job_id} is running in another process ({folder / '.lock'}); wait for it to finish"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def plan_options(self) -> dict[str, bool]:
        """How ``make_plan`` rebuilds this directory's plan: ``compare`` (all strategies) and ``m0_only`` (``atso train``)."""
        manifest = read_json(self.manifest_path) if self.manifest_path.is_file() else {}
        return {"compare": bool(manifest.get("compare")), "m0_only": bool(manifest.get("m0_only"))}

    def finished_jobs(self) -> dict[str, Any]:
        """Finished jobs as recorded in the manifest."""
        if not self.manifest_path.is_file():
            return {}
        return dict(read_json(self.manifest_path).get("jobs", {}))

    def is_finished(self, job_id: str) -> bool:
        return job_id in self.finished_jobs()

    def mark_finished(self, job_id: str, outputs: dict[str, Any], wall_seconds: float, threads: int | None = None) -> None:
        """Record a job as finished; call only after all its outputs are durable (written and fsynced).

        ``threads``, the intra-op threads it ran on, stands beside its wall time to explain it.
        """
        entry: dict[str, Any] = {"outputs": outputs, "wall_seconds": round(wall_seconds, 3)}
        if threads is not None:
            entry["threads"] = threads
        entry["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        with self.manifest() as manifest:
            manifest.setdefault("jobs", {})[job_id] = entry

    def write_metrics_lines(self, records: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl from the finished evaluation jobs (never duplicated by a resume)."""
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ (``runtime`` never counts: it does not change results)."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b and not (prefix == "" and key == "runtime"):
            keys.append(f"{prefix}{key}")
    return keys
