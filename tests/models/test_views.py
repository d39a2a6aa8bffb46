import pytest
import torch

from atso.checkpoints import ModelInfo, load_model, save_model
from atso.data.description import DatasetDescription
from atso.models.views import SHARED, ViewNetworks, build_view_networks

VIEWS = ["axial", "coronal", "sagittal"]


def test_one_network_per_view_or_one_shared():
    own = build_view_networks("small_unet", 2, 3, VIEWS, shared=False, base_channels=4, depth=2)
    assert own.keys() == VIEWS and own.network("coronal") is own.networks["coronal"]
    assert own.views_of("coronal") == ["coronal"]
    shared = build_view_networks("small_unet", 2, 3, VIEWS, shared=True, base_channels=4, depth=2)
    assert shared.keys() == [SHARED]
    assert shared.network("axial") is shared.network("sagittal")
    assert shared.views_of(SHARED) == VIEWS
    out = own.network("axial")(torch.zeros(2, 3, 16, 20))
    assert out.shape == (2, 2, 16, 20)


def test_a_view_without_network_is_an_error():
    with pytest.raises(ValueError, match="no network"):
        ViewNetworks({"axial": torch.nn.Identity()}, VIEWS)


def test_model_file_round_trip_rebuilds_the_view_networks(tmp_path):
    model = build_view_networks("small_unet", 2, 3, ["axial", "sagittal"], shared=False, base_channels=4, depth=2)
    volume = {"views": ["axial", "sagittal"], "shared_network": False, "context": 1}
    description = DatasetDescription(name="blob", classes=["background", "blob"])
    info = ModelInfo("small_unet", {"base_channels": 4, "depth": 2}, description, (16, 16), {"volume": volume})
    path = save_model(tmp_path / "model.pt", model, info)
    loaded, loaded_info = load_model(path)
    assert isinstance(loaded, ViewNetworks) and loaded.views == ["axial", "sagittal"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert loaded_info.extra["volume"] == volume
