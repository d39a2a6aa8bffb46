"""``atso init``: a config written from a folder, loadable as is, never over an existing file; ``--data`` / ``--test``."""

from __future__ import annotations

import pytest
import yaml

from atso.cli import build_parser, main
from atso.config import load_config

from conftest import tiny_config, write_dataset


def test_init_writes_a_config_that_loads_and_says_what_it_found(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "mine", {"train": 16, "val": 4})
    assert main(["init", "mine", "--out", "mine.yaml"]) == 0
    out = capsys.readouterr().out
    assert "found: CamVid layout (train/ trainannot/), images" in out
    assert "classes (4): class_0, class_1, class_2, class_3" in out
    assert "samples: 16 for training (2 labeled = S, 14 reference = R), 4 test" in out
    assert "wrote mine.yaml and mine.classes.yaml" in out and "atso train mine.yaml" in out
    config = load_config(tmp_path / "mine.yaml")
    assert config.data.train.root == (tmp_path / "mine").resolve() and config.data.labeled_count == 2
    assert config.data.description == str((tmp_path / "mine.classes.yaml").resolve())
    before = (tmp_path / "mine.yaml").read_text()
    assert main(["init", "mine", "--out", "mine.yaml"]) == 2
    assert "mine.yaml: exists" in capsys.readouterr().err and (tmp_path / "mine.yaml").read_text() == before


def test_init_of_an_unknown_folder_writes_nothing(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert main(["init", str(tmp_path / "photos"), "--out", str(tmp_path / "c.yaml")]) == 2
    assert "not a dataset layout atso knows" in capsys.readouterr().err
    assert not (tmp_path / "c.yaml").exists() and not (tmp_path / "c.classes.yaml").exists()


def test_data_and_test_stand_for_the_roots(tmp_path, capsys, monkeypatch):
    from atso.cli.runs import _load

    monkeypatch.chdir(tmp_path)
    configured, mine = write_dataset(tmp_path / "a", {"train": 4}), write_dataset(tmp_path / "b", {"train": 4})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config(configured)))
    build = build_parser()
    config = _load(build.parse_args(["train", "c.yaml", "--data", "b"]), [])
    assert config.data.train.root == mine.resolve() and config.data.test.root == mine.resolve()
    config = _load(build.parse_args(["train", "c.yaml", "--data", "b", "--test", "a"]), [])
    assert config.data.train.root == mine.resolve() and config.data.test.root == configured.resolve()
    assert main(["train", "c.yaml", "--data", "nowhere", "--out", "run"]) == 2
    assert capsys.readouterr().err.strip() == f"atso: error: --data nowhere: no such folder ({tmp_path.resolve() / 'nowhere'})"
    assert not (tmp_path / "run").exists()
