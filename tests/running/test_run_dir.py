"""The run directory is atso's alone: foreign folders are refused, and clean-up touches only atso's files."""

from __future__ import annotations

import pytest

from atso.config import config_from_dict
from atso.errors import AtsoError
from atso.running.run_dir import RunDirectory

from conftest import tiny_config


def _tree(folder):
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_non_empty_folder_that_is_not_a_run_directory_is_refused_untouched(tiny_dataset, tmp_path):
    out = tmp_path / "mine"
    (out / "deep").mkdir(parents=True)
    (out / "deep" / ".cache.xyz.tmp").write_text("a user's file")
    (out / "notes.txt").write_text("keep")
    before = _tree(out)
    with pytest.raises(AtsoError, match="mine: not empty and not an atso run directory .*notes.txt.*new or empty --out"):
        RunDirectory(out).prepare(config_from_dict(tiny_config(tiny_dataset)))
    assert _tree(out) == before and sorted(p.name for p in out.iterdir()) == ["deep", "notes.txt"]


@pytest.mark.parametrize("leftover", [None, ".manifest.lock", ".config.yaml.k2j4_9zq.tmp"])
def test_an_empty_folder_or_one_killed_in_its_first_write_is_accepted(tiny_dataset, tmp_path, leftover):
    out = tmp_path / "run"
    out.mkdir()
    if leftover:
        (out / leftover).write_text("")
    RunDirectory(out).prepare(config_from_dict(tiny_config(tiny_dataset)))
    assert (out / "config.yaml").is_file() and not list(out.glob(".config.yaml.*.tmp"))


def test_clean_up_removes_only_atso_temporary_files_in_the_folders_atso_writes(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    directory = RunDirectory(out)
    directory.prepare(config_from_dict(tiny_config(tiny_dataset)))
    ours = [out / ".manifest.json.abcd1234.tmp", out / "jobs" / "g0" / "m0" / ".state.pt.zz9_0aqw.tmp",
            out / "jobs" / "g0" / "labels" / ".x.png.12345678.tmp", out / "report" / ".index.html.qwertyui.tmp"]
    theirs = [out / "jobs" / ".cache.xyz.tmp", out / "tensorboard" / ".events.abcd1234.tmp",
              out / "deep" / ".notes.abcd1234.tmp"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    directory.prepare(config_from_dict(tiny_config(tiny_dataset)))
    assert not any(path.exists() for path in ours)
    assert all(path.exists() for path in theirs)


def test_a_symlinked_folder_inside_jobs_is_not_followed(tiny_dataset, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / ".data.abcd1234.tmp").write_text("not atso's")
    out = tmp_path / "run"
    RunDirectory(out).prepare(config_from_dict(tiny_config(tiny_dataset)))
    (out / "jobs").mkdir()
    (out / "jobs" / "link").symlink_to(outside)
    RunDirectory(out).prepare(config_from_dict(tiny_config(tiny_dataset)))
    assert (outside / ".data.abcd1234.tmp").exists()


def test_a_corrupt_finished_model_stops_a_resume_before_anything_is_written(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    directory = RunDirectory(out)
    config = config_from_dict(tiny_config(tiny_dataset))
    directory.prepare(config)
    model = directory.model_path("g0/m0")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"PK\x03\x04 half a zip")
    directory.mark_finished("g0/m0", {"model": "jobs/g0/m0/model.pt"}, 1.0)
    before = _tree(out)
    with pytest.raises(AtsoError, match="m0/model.pt: cannot read checkpoint .*job g0/m0 is recorded finished"):
        directory.prepare(config)
    assert _tree(out) == before
