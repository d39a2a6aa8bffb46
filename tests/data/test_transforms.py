import numpy as np
import pytest
import torch

from atso.data.transforms import MEAN, STD, Augmentation, resize_image, resize_labels, to_tensor

H, W = 20, 24


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _labels():
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[:, W // 2 :] = 3
    labels[H // 2 :, : W // 3] = 7
    labels[0, 0] = 255
    return labels


@pytest.mark.parametrize("scale_range", [(0.5, 0.5), (0.6, 0.9), (1.0, 1.0), (1.3, 2.0), (0.75, 1.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_output_size_equals_input_size(scale_range, seed):
    augment = Augmentation(scale_range=scale_range, blur_probability=0.5)
    image, labels = augment(_image(), _labels(), np.random.default_rng(seed))
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert labels.shape == (H, W) and labels.dtype == np.uint8
    assert image.flags["C_CONTIGUOUS"] and labels.flags["C_CONTIGUOUS"]


def test_padding_uses_the_ignore_index_in_labels_and_zero_in_images():
    augment = Augmentation(scale_range=(0.5, 0.5), hflip=False, ignore_index=200)
    image = np.full((H, W, 3), 90, dtype=np.uint8)
    labels = np.ones((H, W), dtype=np.uint8)
    out_image, out_labels = augment(image, labels, np.random.default_rng(0))
    expected = np.full((H, W), 200, dtype=np.uint8)
    expected[: H // 2, : W // 2] = 1
    np.testing.assert_array_equal(out_labels, expected)
    assert (out_image[: H // 2, : W // 2] == 90).all()
    assert (out_image[H // 2 :] == 0).all() and (out_image[:, W // 2 :] == 0).all()


def test_identity_scale_without_flip_returns_the_input():
    image, labels = _image(), _labels()
    out_image, out_labels = Augmentation(scale_range=(1.0, 1.0), hflip=False)(image, labels, np.random.default_rng(5))
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_labels, labels)


def test_flip_mirrors_image_and_labels_together():
    image, labels = _image(), _labels()
    augment = Augmentation(scale_range=(1.0, 1.0), hflip=True)
    flipped = [augment(image, labels, np.random.default_rng(seed)) for seed in range(16)]
    mirrored = [out for out in flipped if np.array_equal(out[1], labels[:, ::-1])]
    assert mirrored and len(mirrored) < len(flipped)  # some seeds flip, some do not
    for out_image, _ in mirrored:
        np.testing.assert_array_equal(out_image, image[:, ::-1])


def test_same_seed_same_output():
    augment = Augmentation(scale_range=(0.5, 2.0), blur_probability=0.5)
    image, labels = _image(), _labels()
    for seed in range(5):
        first = augment(image, labels, np.random.default_rng(seed))
        second = augment(image, labels, np.random.default_rng(seed))
        np.testing.assert_array_equal(first[0], second[0])
        np.testing.assert_array_equal(first[1], second[1])


@pytest.mark.parametrize("seed", range(8))
def test_labels_never_invent_classes(seed):
    labels = _labels()
    augment = Augmentation(scale_range=(0.55, 1.8), blur_probability=1.0, ignore_index=255)
    _, out = augment(_image(seed), labels, np.random.default_rng(seed))
    assert set(np.unique(out)) <= set(np.unique(labels)) | {255}


def test_blur_changes_only_the_image():
    image, labels = _image(), _labels()
    augment = Augmentation(scale_range=(1.0, 1.0), hflip=False, blur_probability=1.0)
    out_image, out_labels = augment(image, labels, np.random.default_rng(0))
    np.testing.assert_array_equal(out_labels, labels)
    assert not np.array_equal(out_image, image)


def test_to_tensor_shape_and_normalisation():
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[0, 0] = (255, 0, 128)
    tensor = to_tensor(image)
    assert tensor.shape == (3, H, W) and tensor.dtype == torch.float32
    expected = (np.array([255, 0, 128], dtype=np.float32) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(tensor[:, 0, 0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(tensor[:, 1, 1].numpy(), -MEAN / STD, rtol=1e-6)


def test_resize_labels_nearest():
    labels = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    expected = np.repeat(np.repeat(labels, 3, axis=0), 2, axis=1)
    np.testing.assert_array_equal(resize_labels(labels, (6, 4)), expected)
    np.testing.assert_array_equal(resize_labels(expected, (2, 2)), labels)
    assert resize_labels(labels, (2, 2)) is labels


def test_resize_image_size_and_identity():
    image = _image()
    assert resize_image(image, (10, 12)).shape == (10, 12, 3)
    assert resize_image(image, (H, W)) is image
    flat = np.full((H, W, 3), 77, dtype=np.uint8)
    assert (resize_image(flat, (33, 17)) == 77).all()


def test_cutmix_box_covers_the_drawn_share():
    from atso.data.transforms import cutmix_mask

    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = cutmix_mask((40, 60), rng, area=(0.25, 0.5))
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert mask.sum() == rows.size * cols.size  # one box
        assert 0.15 <= mask.mean() <= 0.6


def test_classmix_takes_whole_classes_and_mix_pastes_them():
    from atso.data.transforms import classmix_mask, mix_pair

    labels = np.array([[0, 0, 1, 1], [2, 2, 3, 255]], np.uint8)
    mask = classmix_mask(labels, np.random.default_rng(1))
    chosen = set(labels[mask].tolist())
    assert len(chosen) == 2 and 255 not in chosen
    assert all((labels == c).sum() == (mask & (labels == c)).sum() for c in chosen)  # whole classes
    image, other = np.zeros((2, 4, 3), np.uint8), np.full((2, 4, 3), 9, np.uint8)
    mixed_image, mixed_labels = mix_pair(image, np.full((2, 4), 7, np.uint8), other, labels, mask)
    assert (mixed_image[mask] == 9).all() and (mixed_image[~mask] == 0).all()
    assert (mixed_labels[mask] == labels[mask]).all() and (mixed_labels[~mask] == 7).all()


def test_strong_photometric_changes_colours_not_geometry_and_repeats_with_its_seed():
    from atso.data.transforms import StrongPhotometric

    image = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    strong = StrongPhotometric(jitter=0.5, jitter_probability=1.0, grayscale_probability=0.0, blur_probability=0.0)
    first = strong(image, np.random.default_rng(7))
    assert first.shape == image.shape and first.dtype == np.uint8
    assert not np.array_equal(first, image)
    assert np.array_equal(first, strong(image, np.random.default_rng(7)))
    assert not np.array_equal(first, strong(image, np.random.default_rng(8)))


def test_strong_photometric_grayscale_makes_channels_equal_and_nothing_asked_changes_nothing():
    from atso.data.transforms import StrongPhotometric

    image = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    gray = StrongPhotometric(jitter_probability=0.0, grayscale_probability=1.0, blur_probability=0.0)(
        image, np.random.default_rng(0)
    )
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    untouched = StrongPhotometric(jitter_probability=0.0, grayscale_probability=0.0, blur_probability=0.0)
    assert np.array_equal(untouched(image, np.random.default_rng(0)), image)


def test_strong_photometric_from_config_honours_enabled():
    from atso.config import StrongAugmentationConfig
    from atso.data.transforms import StrongPhotometric

    assert StrongPhotometric.from_config(StrongAugmentationConfig(enabled=False)) is None
    made = StrongPhotometric.from_config(StrongAugmentationConfig(jitter=0.3, blur_probability=0.1))
    assert made == StrongPhotometric(0.3, 0.8, 0.2, 0.1)
