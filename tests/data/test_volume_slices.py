import nibabel as nib
import numpy as np
import pytest
import torch

from atso.config import VolumeConfig
from atso.data.description import DatasetDescription
from atso.data.volume_slices import SliceAugmentation, SliceTrainingDataset, VolumePair, prepare_image
from atso.data.volumes import read_volume
from atso.errors import AtsoError

DESCRIPTION = DatasetDescription(name="blob", classes=["background", "blob"])


def _pair(tmp_path, name="v", zooms=(1.0, 1.0, 2.0), pseudo=False):
    rng = np.random.default_rng(0)
    labels = np.zeros((12, 10, 6), np.uint8)
    labels[3:8, 2:6, 1:3] = 1
    image = rng.normal(0, 1, labels.shape).astype(np.float32) + 3 * labels
    affine = np.diag([*zooms, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / f"{name}_label.nii.gz")
    return VolumePair(name, tmp_path / f"{name}.nii.gz", tmp_path / f"{name}_label.nii.gz", pseudo), labels


def _dataset(pair, settings, views, seed=0):
    return SliceTrainingDataset([pair], DESCRIPTION, settings, views, (16, 16), SliceAugmentation(), 4, seed)


def test_slices_with_foreground_and_a_share_of_the_empty_ones(tmp_path):
    pair, labels = _pair(tmp_path)
    none_empty = _dataset(pair, VolumeConfig(empty_ratio=0.0, context=1), ["axial"])
    assert len(none_empty) == 2  # axial slices 1 and 2 hold the blob
    assert none_empty.images.shape == (2, 3, 16, 16)  # context 1: three channels, resized to the input size
    every = _dataset(pair, VolumeConfig(empty_ratio=1.0), ["axial", "coronal", "sagittal"])
    assert len(every) == 6 + 10 + 12


def test_items_are_the_same_on_every_call_and_keep_their_size(tmp_path):
    pair, _ = _pair(tmp_path)
    first = _dataset(pair, VolumeConfig(empty_ratio=0.5), ["coronal"], seed=3)
    second = _dataset(pair, VolumeConfig(empty_ratio=0.5), ["coronal"], seed=3)
    for key in [(0, 0), (5, 3), (17, 1)]:
        (a, la), (b, lb) = first[key], second[key]
        assert torch.equal(a, b) and torch.equal(la, lb)
        assert a.shape == (1, 16, 16) and la.shape == (16, 16) and la.dtype == torch.int64


def test_spacing_normalisation_resamples_the_long_axis(tmp_path):
    pair, _ = _pair(tmp_path, zooms=(1.0, 1.0, 2.0))
    data = prepare_image(read_volume(pair.image), VolumeConfig(intensity="none", slice_spacing=1.0))
    assert data.shape == (12, 10, 12)
    dataset = _dataset(pair, VolumeConfig(empty_ratio=0.0, slice_spacing=1.0), ["axial"])
    assert len(dataset) == 4  # the two blob slices became four


def test_a_pseudo_label_on_another_grid_is_refused(tmp_path):
    pair, _ = _pair(tmp_path, pseudo=True)
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 5), np.uint8), np.eye(4)), pair.target)
    with pytest.raises(AtsoError, match="labeled again"):
        _dataset(pair, VolumeConfig(), ["axial"])


def test_augmentation_pads_with_ignore_and_keeps_the_size():
    image, labels = torch.ones(1, 16, 16), torch.ones(16, 16, dtype=torch.int64)
    rng = np.random.default_rng(0)
    augment = SliceAugmentation(scale_range=(0.5, 0.5), hflip=True, ignore_index=255)
    out_image, out_labels = augment(image, labels, rng)
    assert out_image.shape == (1, 16, 16) and out_labels.shape == (16, 16)
    assert (out_labels == 255).sum() == 16 * 16 - 8 * 8 and (out_image == 0).sum() == 16 * 16 - 8 * 8


def test_labeled_share_draws_slices_of_ground_truth_volumes_first(tmp_path):
    truth, _ = _pair(tmp_path, "a")
    pseudo, _ = _pair(tmp_path, "b", pseudo=True)
    dataset = SliceTrainingDataset(
        [truth, pseudo], DESCRIPTION, VolumeConfig(empty_ratio=0.0), ["axial"], (16, 16), SliceAugmentation(), 4, 0,
        labeled_share=0.25,
    )
    assert dataset.stream.labeled == [0, 1] and dataset.stream.pseudo == [2, 3]
    assert all(dataset.stream.index(it, 0) in (0, 1) for it in range(10))
    assert all(dataset.stream.index(it, slot) in (2, 3) for it in range(10) for slot in (1, 2, 3))


def test_intensity_jitter_keeps_the_shape_repeats_with_its_seed_and_can_do_nothing():
    from atso.data.volume_slices import SliceIntensityJitter

    image = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (3, 16, 16)).astype(np.float32))
    jitter = SliceIntensityJitter(probability=1.0)
    first = jitter(image, np.random.default_rng(5))
    assert first.shape == image.shape and first.dtype == image.dtype
    assert not torch.equal(first, image)
    assert torch.equal(first, jitter(image, np.random.default_rng(5)))
    assert torch.equal(SliceIntensityJitter(probability=0.0)(image, np.random.default_rng(5)), image)
    gain_only = SliceIntensityJitter(gain=0.5, bias=0.0, gamma=(1.0, 1.0), noise=0.0, probability=1.0)
    ratio = gain_only(image, np.random.default_rng(1)) / image
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-4)  # one factor for the whole slice


def test_strong_view_and_mixing_touch_pseudo_labeled_slices_only(tmp_path):
    from atso.data.volume_slices import SliceIntensityJitter

    truth, _ = _pair(tmp_path, "a")
    pseudo, _ = _pair(tmp_path, "b", pseudo=True)
    pairs, settings = [truth, pseudo], VolumeConfig(empty_ratio=1.0)
    plain = SliceTrainingDataset(pairs, DESCRIPTION, settings, ["axial"], (16, 16), SliceAugmentation(), 4, 0)
    strong = SliceTrainingDataset(
        pairs, DESCRIPTION, settings, ["axial"], (16, 16), SliceAugmentation(), 4, 0,
        mix="cutmix", mix_probability=1.0, strong=SliceIntensityJitter(probability=1.0),
    )
    changed = 0
    for iteration in range(8):
        for slot in range(4):
            (a, la), (b, lb) = strong[(iteration, slot)], plain[(iteration, slot)]
            if plain.stream.index(iteration, slot) in plain.stream.labeled:
                assert torch.equal(a, b) and torch.equal(la, lb)
            else:
                changed += not torch.equal(a, b)
    assert changed > 0
