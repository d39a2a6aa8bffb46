"""Model files rebuild the network and its label space without the run's config."""

from __future__ import annotations

import pytest
import torch

from atso.checkpoints import ModelInfo, load_model, load_pretrained, save_model
from atso.data.description import load_description
from atso.errors import AtsoError
from atso.models import build_model


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("small_unet", 11, base_channels=4, depth=2)
    info = ModelInfo("small_unet", {"base_channels": 4, "depth": 2}, load_description("camvid"), (32, 48))
    save_model(tmp_path / "model.pt", model, info)
    loaded, loaded_info = load_model(tmp_path / "model.pt")
    assert loaded_info.input_size == (32, 48)
    assert loaded_info.description.classes == info.description.classes
    images = torch.randn(1, 3, 32, 48)
    model.eval()
    assert torch.equal(model(images), loaded(images))


def test_nan_weights_are_never_saved(tmp_path):
    model = build_model("small_unet", 3, base_channels=4, depth=2)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    info = ModelInfo("small_unet", {"base_channels": 4, "depth": 2}, load_description("camvid"), (32, 32))
    with pytest.raises(AtsoError, match="NaN"):
        save_model(tmp_path / "model.pt", model, info)
    assert not (tmp_path / "model.pt").exists()


def test_bad_files(tmp_path):
    with pytest.raises(AtsoError, match="not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(AtsoError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(AtsoError, match="not an atso model file"):
        load_model(tmp_path / "other.pt")


def test_pretrained_weights_load_or_say_why_not(tmp_path):
    info = ModelInfo("small_unet", {"base_channels": 4, "depth": 2}, load_description("camvid"), (32, 32))
    source = build_model("small_unet", 11, base_channels=4, depth=2)
    save_model(tmp_path / "model.pt", source, info)
    target = build_model("small_unet", 11, base_channels=4, depth=2)
    load_pretrained(target, tmp_path / "model.pt")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))
    with pytest.raises(AtsoError, match="model.pretrained: .*missing.pt: checkpoint not found"):
        load_pretrained(target, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(AtsoError, match="model.pretrained: .*junk.pt: cannot read"):
        load_pretrained(target, tmp_path / "junk.pt")
    with pytest.raises(AtsoError, match="model.pretrained: .*model.pt: does not fit"):
        load_pretrained(build_model("small_unet", 3, base_channels=4, depth=2), tmp_path / "model.pt")


def _model_file(tmp_path, classes: int = 3):
    info = ModelInfo("small_unet", {"base_channels": 4, "depth": 2}, load_description("camvid"), (32, 32))
    path = tmp_path / "model.pt"
    save_model(path, build_model("small_unet", 11, base_channels=4, depth=2), info)
    return path


@pytest.mark.parametrize("loader", ["load_model", "load_pretrained", "load_weights", "verify_model_file"])
def test_a_model_file_carrying_code_is_refused_and_nothing_runs(tmp_path, loader):
    import atso.checkpoints as checkpoints
    from conftest import write_code_carrying_file

    payload = torch.load(_model_file(tmp_path), weights_only=True)  # a real model file, plus one pickled call
    path, marker = write_code_carrying_file(tmp_path / "evil.pt", tmp_path, payload)
    call = {
        "load_model": lambda: checkpoints.load_model(path),
        "load_pretrained": lambda: checkpoints.load_pretrained(build_model("small_unet", 11, base_channels=4, depth=2), path),
        "load_weights": lambda: checkpoints.load_weights(path),
        "verify_model_file": lambda: checkpoints.verify_model_file(path),
    }[loader]
    with pytest.raises(AtsoError, match="evil.pt: refusing to load") as info:
        call()
    assert not marker.exists(), "unpickling ran the file's code"
    assert "\n" not in str(info.value)


def test_model_file_whose_weights_do_not_fit_its_network_is_one_line(tmp_path):
    path = _model_file(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = {key: value[:1] if value.dim() else value for key, value in payload["state_dict"].items()}
    torch.save(payload, tmp_path / "shrunk.pt")
    with pytest.raises(AtsoError, match="shrunk.pt: its weights do not fit the network") as info:
        load_model(tmp_path / "shrunk.pt")
    assert "\n" not in str(info.value)


def test_truncated_model_file_is_refused_by_verify(tmp_path):
    from atso.checkpoints import verify_model_file

    path = _model_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AtsoError, match="model.pt: cannot read checkpoint .* truncated"):
        verify_model_file(path)
