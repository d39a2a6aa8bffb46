import numpy as np
import pytest
import torch
import torch.nn.functional as F

from atso.data.resampling import resample_to_shape, resample_to_spacing, spacing_shape

SHAPE = (20, 14, 9)
SPACING = (0.7, 0.7, 2.5)


def blob_labels() -> np.ndarray:
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(SHAPE, SPACING)), indexing="ij")
    labels = ((x - 7.0) ** 2 / 16 + (y - 5.0) ** 2 / 12 + (z - 11.0) ** 2 / 49 <= 1).astype(np.uint8)
    labels[0, 0, 0] = 2  # a second class, to check values survive
    return labels


def test_spacing_shape():
    assert spacing_shape(SHAPE, SPACING, 1.25) == (20, 14, 18)
    assert spacing_shape(SHAPE, SPACING, 1.0) == (20, 14, 22)  # round(9 * 2.5)
    assert spacing_shape(SHAPE, SPACING, 0.35, axis=0) == (40, 14, 9)
    assert spacing_shape(SHAPE, SPACING, 100.0) == (20, 14, 1)


def test_nearest_labels_survive_integer_upsampling_and_back():
    labels = blob_labels()
    fine = resample_to_spacing(labels, SPACING, 0.5, order="nearest")  # 2.5 / 0.5: five times the slices
    assert fine.shape == (20, 14, 45) and fine.dtype == np.uint8
    np.testing.assert_array_equal(fine[:, :, 10:15], np.repeat(labels[:, :, 2:3], 5, axis=2))
    np.testing.assert_array_equal(resample_to_shape(fine, SHAPE, order="nearest"), labels)


def test_nearest_matches_torch_nearest_exact():
    data = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    for shape in [(20, 14, 22), (7, 30, 4)]:
        expected = F.interpolate(torch.from_numpy(data)[None, None], size=shape, mode="nearest-exact")[0, 0]
        np.testing.assert_array_equal(resample_to_shape(data, shape, order="nearest"), expected.numpy())


def test_linear_shapes_channels_and_values():
    rng = np.random.default_rng(0)
    probabilities = rng.random((2,) + SHAPE).astype(np.float32)
    fine = resample_to_spacing(probabilities, SPACING, 1.0)
    assert fine.shape == (2, 20, 14, 22) and fine.dtype == np.float32
    back = resample_to_shape(fine, SHAPE, order="linear")
    assert back.shape == (2,) + SHAPE
    # A ramp along the resampled axis stays a ramp: trilinear is exact on linear data inside the grid.
    ramp = np.broadcast_to(np.arange(9, dtype=np.float32), SHAPE)
    doubled = resample_to_shape(ramp, (20, 14, 18), order="linear")
    np.testing.assert_allclose(doubled[0, 0, 1:-1], np.arange(1, 17) / 2.0 - 0.25, atol=1e-6)
    # Untouched axes keep their voxels exactly.
    np.testing.assert_array_equal(resample_to_shape(probabilities, SHAPE), probabilities)


def test_bad_arguments():
    with pytest.raises(ValueError, match="order must be"):
        resample_to_shape(np.zeros(SHAPE), SHAPE, order="cubic")
    with pytest.raises(ValueError, match="X x Y x Z"):
        resample_to_shape(np.zeros((3, 4)), (3, 4, 5))
    with pytest.raises(ValueError, match="positive"):
        spacing_shape(SHAPE, SPACING, 0.0)
