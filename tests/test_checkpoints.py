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
