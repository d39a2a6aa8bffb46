import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from atso.config import VolumeConfig
from atso.data.samples import Sample
from atso.inference.volume_predictor import VolumePredictor
from atso.models.views import SHARED, ViewNetworks


class Threshold(nn.Module):
    """Foreground where the centre channel exceeds 0.5: a network whose answer is known in advance."""

    def __init__(self, context: int = 0, flip_answer: bool = False) -> None:
        super().__init__()
        self.context, self.flip_answer = context, flip_answer

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        centre = slices[:, self.context : self.context + 1]
        foreground = 50.0 * (centre - 0.5) * (-1 if self.flip_answer else 1)
        return torch.cat([torch.zeros_like(centre), foreground], dim=1)


def _save(path, data, zooms=(1.0, 1.0, 1.0)):
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = (3.0, -2.0, 7.0)
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return Sample(path.name.split(".")[0], path)


def _predict(model, sample, settings, input_size):
    predictor = VolumePredictor({"m": model}, settings, input_size, torch.device("cpu"), batch_size=5)
    ((got, predictions),) = list(predictor.predict([sample], {"m": ["m"]}))
    return predictions["m"]


def test_known_network_gives_its_answer_on_a_non_cubic_volume(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.random((12, 10, 8)) > 0.7).astype(np.float32)  # 0/1 voxels
    sample = _save(tmp_path / "v.nii.gz", data)
    settings = VolumeConfig(intensity="none", context=1)
    model = ViewNetworks({SHARED: Threshold(context=1)}, settings.views)
    prediction = _predict(model, sample, settings, (12, 10))
    assert prediction.labels.shape == (12, 10, 8)
    # Each view gives the thresholded volume up to the resize of its slices; the vote keeps the majority.
    agreement = (prediction.labels == data.astype(np.uint8)).mean()
    assert agreement > 0.9
    assert prediction.grid.shape == (12, 10, 8)


def test_majority_vote_overrules_one_wrong_view(tmp_path):
    data = np.zeros((8, 8, 8), np.float32)
    data[2:6, 2:6, 2:6] = 1.0
    sample = _save(tmp_path / "v.nii.gz", data)
    settings = VolumeConfig(intensity="none", fusion="majority")
    networks = {"axial": Threshold(), "coronal": Threshold(), "sagittal": Threshold(flip_answer=True)}
    prediction = _predict(ViewNetworks(networks, settings.views), sample, settings, (8, 8))
    np.testing.assert_array_equal(prediction.labels, data.astype(np.uint8))
    # Mean probability: two confident right views and one confident wrong view also give the truth.
    settings = VolumeConfig(intensity="none", fusion="mean")
    prediction = _predict(ViewNetworks(networks, settings.views), sample, settings, (8, 8))
    np.testing.assert_array_equal(prediction.labels, data.astype(np.uint8))


def test_spacing_is_normalised_for_the_networks_and_outputs_return_to_the_scan_grid(tmp_path):
    data = np.zeros((10, 9, 6), np.float32)
    data[3:7, 2:7, 2:4] = 1.0
    sample = _save(tmp_path / "v.nii.gz", data, zooms=(1.0, 1.0, 3.0))  # thick slices
    seen = []

    class Spy(Threshold):
        def forward(self, slices):
            seen.append(tuple(slices.shape))
            return super().forward(slices)

    settings = VolumeConfig(intensity="none", views=["sagittal"], slice_spacing=1.0)
    prediction = _predict(ViewNetworks({"sagittal": Spy()}, ["sagittal"]), sample, settings, (9, 18))
    assert prediction.labels.shape == (10, 9, 6)
    assert seen[0][1:] == (1, 9, 18)  # a sagittal slice is Y x Z, with Z resampled from 6 to 18 slices
    np.testing.assert_array_equal(prediction.labels, data.astype(np.uint8))


def test_super_classes_are_refused_for_volumes(tmp_path):
    sample = _save(tmp_path / "v.nii.gz", np.zeros((8, 8, 8)))
    settings = VolumeConfig(intensity="none")
    predictor = VolumePredictor({"m": ViewNetworks({SHARED: Threshold()}, settings.views)}, settings, (8, 8), torch.device("cpu"))
    with pytest.raises(ValueError, match="super-class"):
        list(predictor.predict([sample], {"m": ["m"]}, superclass_table=np.array([0, 0])))


def test_compile_compiles_each_views_network(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *args, **kwargs: compiled.append(self))
    settings = VolumeConfig(intensity="none")
    networks = {view: Threshold() for view in settings.views}
    VolumePredictor({"m": ViewNetworks(networks, settings.views)}, settings, (8, 8), torch.device("cpu"), compile=True)
    assert compiled == [networks[view] for view in settings.views]  # what the predictor calls, not the wrapper
