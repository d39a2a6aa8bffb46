"""Same seed, same numbers: whatever the data-loader workers, and under ``runtime.deterministic``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from atso.cli import main
from atso.errors import AtsoError
from atso.runtime.determinism import deterministic_algorithms

from conftest import tiny_config


def run_cli(config_file: Path, out: Path, *overrides: str) -> list[dict]:
    arguments = ["run", str(config_file), "--out", str(out), "--quiet"]
    for override in overrides:
        arguments += ["--set", override]
    assert main(arguments) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_workers_and_deterministic_mode_do_not_change_the_numbers(tiny_dataset, tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(tiny_dataset)))
    in_process = run_cli(config_file, tmp_path / "workers-0", "runtime.num_workers=0")
    two_workers = run_cli(config_file, tmp_path / "workers-2", "runtime.num_workers=2")
    deterministic = run_cli(config_file, tmp_path / "deterministic", "runtime.deterministic=true")
    assert two_workers == in_process
    assert deterministic == in_process
    assert not torch.are_deterministic_algorithms_enabled()  # the mode ends with the run


def test_deterministic_mode_is_scoped_and_restores_the_settings(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    benchmark = torch.backends.cudnn.benchmark
    with deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True
    assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert torch.backends.cudnn.benchmark == benchmark
    with deterministic_algorithms(False):
        assert not torch.are_deterministic_algorithms_enabled()


def test_an_operation_without_a_deterministic_kernel_is_a_one_line_error():
    with pytest.raises(AtsoError, match=r"^g0/m0: put_ has no deterministic implementation.*runtime.deterministic=false"):
        with deterministic_algorithms(True, job="g0/m0"):
            torch.zeros(4).put_(torch.tensor([1]), torch.tensor([1.0]))  # refused on every device
    assert not torch.are_deterministic_algorithms_enabled()
