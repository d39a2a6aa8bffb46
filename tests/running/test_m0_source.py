"""``--m0 RUN_DIR``: a run starts from another run's finished M0, and refuses one trained another way."""

from __future__ import annotations

import pytest

from atso import api
from atso.config import config_from_dict
from atso.errors import AtsoError
from atso.running.m0_source import check_m0_source
from atso.running.run_dir import RunDirectory
from atso.strategies.plan import M0

from conftest import tiny_config


def _train(config: dict, out) -> dict:
    return api.run(config_from_dict(config), out, m0_only=True, log=lambda line: None)


def test_train_alone_trains_and_scores_m0_and_labels_nothing(tiny_dataset, tmp_path):
    out = tmp_path / "m0"
    result = _train(tiny_config(tiny_dataset), out)
    assert sorted(RunDirectory(out).finished_jobs()) == ["g0/m0", "g0/test"]
    assert not (out / "jobs" / "g0" / "labels").exists() and not (out / "report").exists()
    (record,) = result["records"]
    assert 0 <= record["test_miou"] <= 1 and "reference_miou" not in record
    assert RunDirectory(out).plan_options() == {"compare": False, "m0_only": True}


def test_a_run_from_an_earlier_m0_copies_it_instead_of_training(tiny_dataset, tmp_path):
    config = tiny_config(tiny_dataset, teacher_student={"strategy": "stso", "generations": 1})
    source = tmp_path / "m0"
    trained = _train(config, source)
    lines: list[str] = []
    # The students may differ: M0 never reads their settings.
    student = tiny_config(tiny_dataset, teacher_student={"strategy": "stso", "generations": 1}, train={"student_lr": 0.2})
    result = api.run(config_from_dict(student), tmp_path / "run", m0=source, log=lines.append, report=False)
    target = RunDirectory(tmp_path / "run")
    assert target.model_path(M0).read_bytes() == RunDirectory(source).model_path(M0).read_bytes()
    record = target.finished_jobs()[M0]
    assert record["wall_seconds"] == 0 and record["outputs"]["copied_from"] == str(RunDirectory(source).model_path(M0).resolve())
    assert not any(line.startswith(f"finished {M0}") for line in lines)
    assert any(line.startswith("M0: copied from") for line in lines)
    assert result["records"][0]["test_miou"] == trained["records"][0]["test_miou"]
    assert "stso/g1/student" in target.finished_jobs()


@pytest.mark.parametrize("changed, key", [({"train": {"lr": 0.02}}, "train.lr"),
                                           ({"data": {"labeled_count": 5}}, "data.labeled_count"),
                                           ({"model": {"options": {"base_channels": 8, "depth": 2}}}, "model.options")])
def test_an_m0_trained_another_way_is_refused_before_anything_is_written(tiny_dataset, tmp_path, changed, key):
    source = tmp_path / "m0"
    _train(tiny_config(tiny_dataset), source)
    other = tiny_config(tiny_dataset)
    for section, values in changed.items():
        other[section].update(values)
    with pytest.raises(AtsoError, match=rf"--m0 .*m0: its M0 was trained with a different {key}.*drop --m0"):
        api.run(config_from_dict(other), tmp_path / "run", m0=source, log=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_a_source_without_a_finished_m0_is_refused(tiny_dataset, tmp_path):
    config = config_from_dict(tiny_config(tiny_dataset))
    with pytest.raises(AtsoError, match="not a run directory .*atso train"):
        check_m0_source(tmp_path / "nothing", config)
    RunDirectory(tmp_path / "empty").prepare(config)
    with pytest.raises(AtsoError, match="its M0 .g0/m0. is not finished"):
        check_m0_source(tmp_path / "empty", config)
