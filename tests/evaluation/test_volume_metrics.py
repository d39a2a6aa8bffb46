import numpy as np
import pytest

from atso.evaluation.volume_metrics import VolumeScores, volume_dice

# Case A (2x2x2): target has 4 foreground voxels, prediction 3 of them plus 1 false positive.
TARGET_A = np.zeros((2, 2, 2), dtype=np.uint8)
TARGET_A[0] = 1
PREDICTION_A = np.zeros((2, 2, 2), dtype=np.uint8)
PREDICTION_A[0, 0] = 1
PREDICTION_A[0, 1, 0] = 1
PREDICTION_A[1, 1, 1] = 1
# DSC_A = 2*3 / (4 + 4) = 0.75
# Case B (1x2x3): target 1 foreground voxel, prediction 2 voxels covering it: DSC_B = 2*1 / (1 + 2) = 2/3.
TARGET_B = np.array([[[1, 0, 0], [0, 0, 255]]], dtype=np.uint8)
PREDICTION_B = np.array([[[1, 1, 0], [0, 0, 1]]], dtype=np.uint8)  # the last voxel is ignored


def test_binary_volumes_per_case_mean_and_global():
    scores = VolumeScores(["background", "atrium"])
    assert scores.add_volume(PREDICTION_A, TARGET_A, "a") == {"atrium": pytest.approx(0.75)}
    assert scores.add_volume(PREDICTION_B, TARGET_B, "b") == {"atrium": pytest.approx(2 / 3)}
    summary = scores.summary()
    assert summary["mean_case_dice"] == pytest.approx((0.75 + 2 / 3) / 2)
    # Merged: overlap 3 + 1, sizes (4 + 4) + (1 + 2).
    assert summary["global_dice"] == pytest.approx(2 * 4 / 11)
    assert summary["per_class_global_dice"] == {"atrium": pytest.approx(8 / 11)}
    assert [case["case_id"] for case in summary["cases"]] == ["a", "b"]
    assert summary["cases"][1]["dice"] == pytest.approx(2 / 3)
    assert summary["num_cases"] == 2 and summary["num_voxels"] == 8 + 5


def test_multi_class_per_class_and_background_excluded():
    target = np.array([[[0, 1, 1, 2]]], dtype=np.uint8)
    prediction = np.array([[[0, 1, 2, 2]]], dtype=np.uint8)
    # class 1: 2*1/(2+1) = 2/3; class 2: 2*1/(1+2) = 2/3; an empty case for class 2 is not a 0.
    empty_target = np.array([[[0, 1]]], dtype=np.uint8)
    scores = VolumeScores(["background", "liver", "tumour"])
    assert scores.add_volume(prediction, target, "x") == {"liver": pytest.approx(2 / 3), "tumour": pytest.approx(2 / 3)}
    assert scores.add_volume(empty_target, empty_target, "y") == {"liver": 1.0, "tumour": None}
    summary = scores.summary()
    assert summary["per_class_case_dice"] == {"liver": pytest.approx((2 / 3 + 1) / 2), "tumour": pytest.approx(2 / 3)}
    assert summary["mean_case_dice"] == pytest.approx(((2 / 3 + 1) / 2 + 2 / 3) / 2)
    assert "background" not in summary["per_class_global_dice"]
    assert summary["per_class_global_dice"]["liver"] == pytest.approx(2 * 2 / (3 + 2))
    assert summary["cases"][1]["per_class_dice"] == {"liver": 1.0, "tumour": None}


def test_volume_dice_and_errors():
    assert volume_dice(PREDICTION_A, TARGET_A, 2) == [pytest.approx(0.75)]
    assert volume_dice(np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 2), np.uint8), 2) == [None]
    with pytest.raises(ValueError, match="at least one foreground"):
        VolumeScores(["background"])
    with pytest.raises(ValueError, match="shape"):
        volume_dice(PREDICTION_A, TARGET_B, 2)


def test_unfiltered_voxels_count_as_misses_of_the_foreground():
    from atso.evaluation.volume_metrics import VolumeScores

    target = np.zeros((2, 2, 2), np.uint8)
    target[0] = 1
    prediction = target.copy()
    prediction[0, 0, 0] = 255  # a foreground voxel left without a label
    scores = VolumeScores(["background", "fg"])
    assert scores.add_volume(prediction, target, "v", unlabeled=255)["fg"] == pytest.approx(2 * 3 / (4 + 3))
    summary = scores.summary()
    assert summary["mean_case_dice"] == pytest.approx(6 / 7) and summary["labeled_fraction"] == pytest.approx(7 / 8)
