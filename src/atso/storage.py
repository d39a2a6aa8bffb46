"""Atomic file writes: a reader never sees a half-written checkpoint, label map or manifest."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from atso.errors import AtsoError


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


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None], fsync: bool = True) -> Path:
    """Write ``path`` through a temporary file in the same folder, then rename it into place.

    Raises:
        AtsoError: the folder cannot be written (read-only, disk full); ``path`` is left untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise AtsoError(f"{path}: cannot write here ({exc.strerror}); choose a writable output folder") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise AtsoError(f"{path}: write failed ({exc.strerror}); free space or fix permissions, then resume") from exc
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write raw bytes atomically."""
    return atomic_write(path, lambda handle: handle.write(data), fsync=fsync)


def atomic_write_text(path: str | Path, text: str, fsync: bool = True) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | Path, obj: Any, fsync: bool = True) -> Path:
    """Write an object as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", fsync=fsync)


def atomic_save_torch(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically, so a killed run never leaves a truncated checkpoint."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    with open(path, "r", encoding="utf-8") as handle:
        return json.load(handle)
