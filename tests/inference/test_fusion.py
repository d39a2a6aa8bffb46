import numpy as np
import pytest

from atso.inference.fusion import average_probabilities, majority_vote, mean_probability

# Three views (axial, coronal, sagittal) of a 2x2x1 volume with 3 classes, one voxel per situation.
AXIAL = np.array([[[1], [2]], [[0], [2]]], dtype=np.uint8)
CORONAL = np.array([[[1], [1]], [[1], [0]]], dtype=np.uint8)
SAGITTAL = np.array([[[0], [1]], [[2], [1]]], dtype=np.uint8)
# voxel (0,0): 1,1,0 -> 1 (two votes); (0,1): 2,1,1 -> 1 (outvotes the axial view)
# (1,0): 0,1,2 -> a three-way tie -> the axial view's 0; (1,1): 2,0,1 -> tie -> axial's 2
EXPECTED = np.array([[[1], [1]], [[0], [2]]], dtype=np.uint8)


def test_majority_vote_by_hand_with_ties_to_the_first_view():
    fused = majority_vote([AXIAL, CORONAL, SAGITTAL], num_classes=3)
    assert fused.dtype == np.uint8
    np.testing.assert_array_equal(fused, EXPECTED)
    # Put the sagittal view first: the tied voxels now take its classes (2 and 1).
    reordered = majority_vote([SAGITTAL, AXIAL, CORONAL], num_classes=3)
    np.testing.assert_array_equal(reordered, np.array([[[1], [1]], [[2], [1]]]))


def test_majority_vote_two_views_and_one_view():
    np.testing.assert_array_equal(majority_vote([AXIAL, CORONAL], 3), np.array([[[1], [2]], [[0], [2]]]))
    np.testing.assert_array_equal(majority_vote([CORONAL], 3), CORONAL)


def test_majority_vote_binary_three_views_never_ties():
    rng = np.random.default_rng(0)
    views = [rng.integers(0, 2, (20, 14, 9)) for _ in range(3)]
    expected = (sum(views) >= 2).astype(np.uint8)
    np.testing.assert_array_equal(majority_vote(views, 2), expected)


def test_majority_vote_checks_its_input():
    with pytest.raises(ValueError, match="one shape"):
        majority_vote([AXIAL, AXIAL[:1]], 3)
    with pytest.raises(ValueError, match="0..1"):
        majority_vote([AXIAL], 2)
    with pytest.raises(ValueError, match="at least one"):
        majority_vote([], 2)


def test_mean_probability():
    axial = np.array([[0.6, 0.2], [0.4, 0.8]], dtype=np.float32).reshape(2, 2, 1, 1)  # K=2, 2x1x1 voxels
    coronal = np.array([[0.1, 0.5], [0.9, 0.5]], dtype=np.float32).reshape(2, 2, 1, 1)
    np.testing.assert_allclose(average_probabilities([axial, coronal])[:, :, 0, 0], [[0.35, 0.35], [0.65, 0.65]])
    labels = mean_probability([axial, coronal])
    assert labels.shape == (2, 1, 1) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels.ravel(), [1, 1])
    # An exact tie goes to the lower class.
    np.testing.assert_array_equal(mean_probability([np.full((2, 1, 1, 1), 0.5)]).ravel(), [0])
