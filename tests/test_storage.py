import os
import tempfile
from pathlib import Path

import pytest
import torch

from atso.errors import AtsoError
from atso.storage import (
    atomic_save_torch,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    fsync_files,
    read_json,
)

from conftest import record_fsyncs


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_writes_leave_only_the_target(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.txt", "héllo")
    atomic_write_json(tmp_path / "c.json", {"b": 1, "a": [1, 2]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.json"]
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert read_json(tmp_path / "c.json") == {"a": [1, 2], "b": 1}
    assert (tmp_path / "c.json").read_text().endswith("\n")


def test_atomic_write_creates_parent_folders_and_replaces(tmp_path):
    path = tmp_path / "run" / "generation_1" / "metrics.json"
    assert atomic_write_text(path, "old", fsync=False) == path
    atomic_write_text(path, "new", fsync=False)
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["metrics.json"]


def test_failing_writer_keeps_previous_content(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"previous")

    def write(handle):
        handle.write(b"half a checkpo")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(path, write)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_writer_os_error_becomes_atso_error(tmp_path):
    path = tmp_path / "labels.png"
    path.write_bytes(b"previous")

    def write(handle):
        raise OSError(28, "No space left on device")

    with pytest.raises(AtsoError, match="labels.png: write failed \\(No space left on device\\)"):
        atomic_write(path, write)
    assert path.read_bytes() == b"previous"
    assert _leftovers(tmp_path) == []


def test_unwritable_folder_raises_atso_error_naming_the_path(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", no_space)
    path = tmp_path / "out" / "metrics.json"
    with pytest.raises(AtsoError) as info:
        atomic_write_json(path, {"miou": 0.5})
    assert str(path) in str(info.value)
    assert "No space left on device" in str(info.value)
    assert not path.exists()


def test_read_only_folder_raises_atso_error_naming_the_path(tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        try:
            (folder / "probe").write_bytes(b"")
        except OSError:
            pass
        else:
            pytest.skip("chmod does not stop this user from writing (running as root?)")
        path = folder / "metrics.json"
        with pytest.raises(AtsoError) as info:
            atomic_write_text(path, "x")
        assert str(path) in str(info.value)
        assert "cannot write here" in str(info.value)
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o700)


def test_atomic_save_torch_round_trip(tmp_path):
    state = {"weights": torch.arange(6, dtype=torch.float32).reshape(2, 3), "iteration": 7}
    path = atomic_save_torch(tmp_path / "model.pt", state)
    loaded = torch.load(path, weights_only=True)
    assert loaded["iteration"] == 7
    assert torch.equal(loaded["weights"], state["weights"])
    assert _leftovers(tmp_path) == []


def test_temporary_files_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    from atso.storage import remove_temporary_files

    (tmp_path / "jobs" / "m0").mkdir(parents=True)
    leftovers = [tmp_path / ".manifest.json.a1b2c3d_.tmp", tmp_path / "jobs" / "m0" / ".state.pt.x9yz0000.tmp"]
    kept = [
        tmp_path / "manifest.json", tmp_path / "jobs" / "m0" / "notes.tmp", tmp_path / ".manifest.lock",
        tmp_path / "jobs" / ".cache.xyz.tmp",  # a dot-file ending in .tmp, but not atso's naming
        tmp_path / "jobs" / ".cache.ABCDEFGH.tmp",  # mkstemp never makes capitals
    ]
    for path in leftovers + kept:
        path.write_bytes(b"")
    assert remove_temporary_files(tmp_path) == [leftovers[0]]  # not recursive unless asked
    assert remove_temporary_files(tmp_path, recursive=True) == [leftovers[1]]
    assert all(path.exists() for path in kept) and not any(path.exists() for path in leftovers)


def test_temporary_naming_matches_what_atomic_write_makes(tmp_path, monkeypatch):
    import atso.storage as storage

    seen = []
    real_replace = storage.os.replace

    def spy(source, target):
        seen.append(Path(source))
        real_replace(source, target)

    monkeypatch.setattr(storage.os, "replace", spy)
    storage.atomic_write_text(tmp_path / "manifest.json", "{}")
    (tmp_path / seen[0].name).write_text("")  # what a kill just before the rename would leave
    assert storage.is_temporary_file(tmp_path / seen[0].name)


def test_unreadable_json_is_a_one_line_error(tmp_path):
    (tmp_path / "manifest.json").write_text('{"jobs": {')
    with pytest.raises(AtsoError, match="manifest.json: cannot read JSON"):
        read_json(tmp_path / "manifest.json")


def test_a_folder_that_cannot_be_made_is_an_atso_error(tmp_path):
    from atso.storage import make_folder

    (tmp_path / "file").write_text("")
    with pytest.raises(AtsoError, match="file/sub: cannot create this folder"):
        make_folder(tmp_path / "file" / "sub")


def test_files_written_without_fsync_are_flushed_in_one_pass(tmp_path, monkeypatch):
    fsynced = record_fsyncs(monkeypatch)
    folders = [tmp_path / "a", tmp_path / "b"]
    files = [atomic_write_bytes(folder / f"{index}.bin", b"x", fsync=False) for folder in folders for index in range(3)]
    assert fsynced == []  # nothing flushed while writing
    assert fsync_files(files) == 6
    resolved = [path.resolve() for path in files]
    assert sorted(fsynced[:6]) == sorted(resolved)  # each file once, all before their folders
    assert sorted(fsynced[6:]) == sorted(folder.resolve() for folder in folders)
    assert fsync_files([]) == 0


def test_a_file_that_cannot_be_flushed_is_an_atso_error(tmp_path):
    with pytest.raises(AtsoError, match="missing.png: cannot flush this file"):
        fsync_files([tmp_path / "missing.png"])
