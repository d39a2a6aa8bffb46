"""Start a run from another run directory's finished M0 (``--m0 RUN_DIR``) instead of training it again.

M0 is trained on S alone, so a comparison, or a strategy tried after ``atso train``, can share one.
Its model file is copied into the new run directory and recorded as the finished ``g0/m0`` job, with
where it came from; the rest of the plan runs as usual. A source whose config differs in anything
M0 depends on is refused, since the new run's tables would then describe a model it never trained.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from atso.checkpoints import verify_model_file
from atso.config import Config
from atso.data.samples import Sample, read_list_file
from atso.errors import AtsoError
from atso.running.run_dir import RunDirectory, changed_keys
from atso.storage import atomic_write
from atso.strategies.plan import M0

# Settings of ``data`` and ``train`` that only the reference set, the test set or the students read.
_NOT_M0_DATA = ("test", "unlabeled")
_NOT_M0_TRAIN = (
    "student_iterations", "student_lr", "student_scale_range", "student_blur_probability",
    "mix", "mix_probability", "strong", "labeled_share",
)


def m0_settings(config: Config) -> dict[str, Any]:
    """The part of a config that M0's weights depend on: data (but test and unlabeled), model, train (but students')."""
    values = config.to_dict()
    data = {key: value for key, value in values["data"].items() if key not in _NOT_M0_DATA}
    train = {key: value for key, value in values["train"].items() if key not in _NOT_M0_TRAIN}
    return {"data": data, "model": values["model"], "train": train}


def check_m0_source(source: str | Path, config: Config, labeled: list[Sample] | None = None) -> RunDirectory:
    """The run directory ``--m0`` names, checked before anything is written: its M0 finished, the same recipe.

    Args:
        labeled: the new run's labeled set S; its files must be those the source's M0 trained on.

    Raises:
        AtsoError: not a run directory, M0 unfinished or unreadable, or a different config for M0.
    """
    directory = RunDirectory(source)
    lead = f"--m0 {source}"
    if not directory.config_path.is_file():
        raise AtsoError(f"{lead}: not a run directory (no config.yaml); give the --out of an earlier 'atso train'")
    if not directory.is_finished(M0):
        raise AtsoError(f"{lead}: its M0 ({M0}) is not finished; run 'atso train' with that --out again, or drop --m0")
    try:
        verify_model_file(directory.model_path(M0))
    except AtsoError as exc:
        raise AtsoError(f"{lead}: {exc}") from exc
    changed = changed_keys(m0_settings(directory.load_config()), m0_settings(config))
    if changed:
        raise AtsoError(
            f"{lead}: its M0 was trained with a different {', '.join(changed[:4])}; M0 depends on data (but test "
            "and unlabeled), model and train (but the student_* settings): use the same values, or drop --m0"
        )
    reliability = config.teacher_student.reliability
    if reliability.enabled:
        # Its snapshots must be those this run would have taken: as many, at the same iterations.
        kept = directory.load_config().teacher_student.reliability
        if not kept.enabled or kept.snapshots != reliability.snapshots:
            raise AtsoError(
                f"{lead}: teacher_student.reliability needs {reliability.snapshots} earlier checkpoints of M0, and that "
                "M0 kept " + (f"{kept.snapshots}" if kept.enabled else "none") + "; train it with the same "
                "teacher_student.reliability settings, or drop --m0"
            )
        for k in range(1, reliability.snapshots + 1):
            try:
                verify_model_file(directory.snapshot_path(M0, k))
            except AtsoError as exc:
                raise AtsoError(f"{lead}: {exc}") from exc
    recorded = directory.splits / "labeled.txt"
    if labeled is not None and recorded.is_file():
        if [s.image.resolve() for s in read_list_file(recorded)] != [s.image.resolve() for s in labeled]:
            raise AtsoError(f"{lead}: {recorded} lists another labeled set than this run's data gives; drop --m0")
    return directory


def adopt_m0(source: RunDirectory, run_dir: RunDirectory) -> bool:
    """Copy the source's M0 into ``run_dir`` as its finished ``g0/m0`` job; False if that job is finished already."""
    if run_dir.is_finished(M0):
        return False
    origin, target = source.model_path(M0), run_dir.model_path(M0)
    kept = source.load_config().teacher_student.reliability
    for k in range(1, kept.snapshots + 1 if kept.enabled else 1):  # its earlier checkpoints (teacher_student.reliability)
        if source.snapshot_path(M0, k).is_file():  # checked before when this run needs them
            _copy(source.snapshot_path(M0, k), run_dir.snapshot_path(M0, k))
    _copy(origin, target)
    record = source.finished_jobs()[M0]
    outputs = dict(record.get("outputs") or {})
    outputs.update({
        "model": str(target.relative_to(run_dir.path)),
        "copied_from": str(origin.resolve()),
        "source_wall_seconds": record.get("wall_seconds"),
    })
    run_dir.mark_finished(M0, outputs, 0.0)
    return True


def _copy(origin: Path, target: Path) -> None:
    with open(origin, "rb") as model_file:
        atomic_write(target, lambda handle: shutil.copyfileobj(model_file, handle))
