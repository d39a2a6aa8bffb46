"""TensorBoard logs: loss and LR per training job, @R/@E per strategy; a clear error without the package."""

from __future__ import annotations

import sys

import pytest

from atso import api
from atso.config import config_from_dict
from atso.errors import AtsoError

from conftest import tiny_config


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_training_and_evaluation_are_logged(tiny_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    config = tiny_config(tiny_dataset, runtime={"device": "cpu", "quiet": True, "tensorboard": True},
                         teacher_student={"strategy": "supervised"})
    out = tmp_path / "run"
    result = api.run(config_from_dict(config), out, log=lambda line: None, report=False)
    training = scalars(out / "tensorboard" / "g0" / "m0")
    assert [step for step, _ in training["train/loss"]] == [10, 12]  # log_every=10, and the last iteration
    assert [step for step, _ in training["train/lr"]] == [10, 12]
    evaluation = scalars(out / "tensorboard" / "eval" / "supervised")
    assert evaluation["eval/test_miou"] == [(0, pytest.approx(result["records"][0]["test_miou"]))]
    assert evaluation["eval/reference_miou"][0][1] == pytest.approx(result["records"][0]["reference_miou"])


def test_tensorboard_asked_for_but_missing_fails_before_training(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    config = tiny_config(tiny_dataset, runtime={"device": "cpu", "quiet": True, "tensorboard": True})
    with pytest.raises(AtsoError, match="runtime.tensorboard: needs `pip install tensorboard`"):
        api.run(config_from_dict(config), tmp_path / "run", log=lambda line: None)
    assert not (tmp_path / "run" / "jobs").exists()
