"""Atomic file writes: a reader never sees a half-written checkpoint, label map or manifest.

A write goes to ``.<name>.<random>.tmp`` in the target's folder and is renamed into place; a process
killed mid-write leaves at most such a temporary file, which no reader looks for (see
:func:`remove_temporary_files`).
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable

from atso.errors import AtsoError
from atso.runtime.faults import maybe_crash


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; outputs should be as readable as any file made with open().
_FILE_MODE = 0o666 & ~_current_umask()


def make_folder(path: str | Path) -> Path:
    """``mkdir -p`` that fails with an AtsoError naming the folder (read-only or full disk)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AtsoError(
            f"{path}: cannot create this folder ({exc.strerror or exc}); choose a writable output folder"
        ) from exc
    return path


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None], fsync: bool = True) -> Path:
    """Write ``path`` through a temporary file in the same folder, then rename it into place.

    With ``fsync=False`` the file is whole for every reader (the rename is atomic) but may not be on
    disk yet: pass it to :func:`fsync_files` before anything records it as finished.

    Raises:
        AtsoError: the folder cannot be written (read-only, disk full); ``path`` is left untouched.
    """
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise AtsoError(f"{path}: cannot write here ({exc.strerror or exc}); choose a writable output folder") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        maybe_crash(f"write:{path.name}")  # a kill here leaves only the temporary file
        os.replace(tmp_name, path)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise AtsoError(f"{path}: write failed ({exc.strerror or exc}); free space or fix permissions, then resume") from exc
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


_FSYNC_THREADS = 8  # fsyncs in flight at once: a journaling file system commits them together


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise AtsoError(
            f"{path}: cannot flush this file to disk ({exc.strerror or exc}); free space or fix the disk, then resume"
        ) from exc


def fsync_files(paths: Iterable[str | Path]) -> int:
    """Flush files written with ``fsync=False`` to disk, then their folders: one pass for a job's outputs.

    A job that writes many small files (label maps) pays one fsync per file either way; here they
    come after the computing, not between its steps, and several are in flight at once, so the
    file system commits them together. Files already on disk cost next to nothing.

    Returns:
        The number of files flushed.

    Raises:
        AtsoError: a file is missing or cannot be flushed (its job must not be recorded finished).
    """
    files = [Path(path) for path in paths]
    if not files:
        return 0
    with ThreadPoolExecutor(max_workers=min(_FSYNC_THREADS, len(files))) as pool:
        list(pool.map(_fsync_file, files))  # list(): the first error is raised here
    for folder in sorted({path.parent for path in files}):
        _fsync_dir(folder)
    return len(files)


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write raw bytes atomically."""
    return atomic_write(path, lambda handle: handle.write(data), fsync=fsync)


def atomic_write_text(path: str | Path, text: str, fsync: bool = True) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | Path, obj: Any, fsync: bool = True) -> Path:
    """Write an object as indented JSON atomically, keys in insertion order (per-class dicts in class order)."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n", fsync=fsync)


def atomic_save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically, so a killed run never leaves a truncated checkpoint."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_torch(path: str | Path, map_location: Any = "cpu", setting: str = "") -> Any:
    """``torch.load`` that never runs code: only tensors and plain data (dicts, lists, numbers, strings).

    Every file atso loads goes through here (model files, ``state.pt``, backbone weights), because a
    pickle can name any callable, and ``torch.load(weights_only=False)`` would call it.

    Args:
        setting: the config key or flag that named the file (e.g. ``model.pretrained``); leads the error.

    Raises:
        AtsoError: the file is missing, truncated or corrupt, or holds anything beyond tensors and plain data.
    """
    import pickle
    import warnings

    import torch

    path = Path(path)
    lead = f"{setting}: " if setting else ""
    if not path.is_file():
        raise AtsoError(f"{lead}{path}: checkpoint not found; pass a model.pt written by atso")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: no second stderr line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc).upper():  # a class or function named in the pickle, refused by torch
            raise AtsoError(
                f"{lead}{path}: refusing to load: it holds Python objects beyond tensors and plain data, which "
                "could run code; pass a file written by atso, or re-save only its state dict"
            ) from exc
        raise AtsoError(f"{lead}{path}: cannot read checkpoint (UnpicklingError); it may be truncated or corrupt") from exc
    except Exception as exc:  # torch raises many types for a corrupt or truncated file
        raise AtsoError(
            f"{lead}{path}: cannot read checkpoint ({exc.__class__.__name__}); it may be truncated or corrupt"
        ) from exc


TEMPORARY_PATTERN = ".*.tmp"  # a glob for looking; deleting goes by the exact naming below
# What atomic_write's mkstemp makes: "." + target name + "." + 8 characters of tempfile's alphabet + ".tmp".
_TEMPORARY_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def is_temporary_file(path: str | Path) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_write` (and is a plain file)."""
    path = Path(path)
    return bool(_TEMPORARY_NAME.fullmatch(path.name)) and path.is_file() and not path.is_symlink()


def remove_temporary_files(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Delete the temporary files that killed writes left in ``folder`` (and below, if ``recursive``).

    Only files of atso's own temporary naming are touched, never a user's ``.cache.tmp``; callers pass
    only folders atso itself writes (see :meth:`atso.running.run_dir.RunDirectory.prepare`). Call it only
    when no other process is writing there.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return []
    if recursive:  # os.walk never follows a symlinked folder out of the run directory
        candidates = [Path(top) / name for top, _, names in os.walk(folder) for name in names]
    else:
        candidates = list(folder.iterdir())
    removed = []
    for leftover in sorted(candidates):
        if is_temporary_file(leftover):
            try:
                leftover.unlink(missing_ok=True)
            except OSError as exc:  # a read-only folder: stop here, as any write there would
                raise AtsoError(
                    f"{leftover}: cannot remove this temporary file ({exc.strerror or exc}); fix permissions, then resume"
                ) from exc
            removed.append(leftover)
    return removed


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`.

    Raises:
        AtsoError: the file cannot be read or is not JSON (edited by hand, or not written by atso).
    """
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise AtsoError(f"{path}: cannot read JSON ({exc}); restore or delete the file") from exc
