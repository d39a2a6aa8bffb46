import json

import numpy as np
import pytest
import torch

from atso.evaluation.metrics import SegmentationScores, agreement, confusion_matrix, format_scores_table
from atso.storage import atomic_write_json

# A 2x3 case worked by hand: rows are target classes, columns predicted classes.
TARGET = np.array([[0, 0, 1], [1, 2, 2]])
PREDICTION = np.array([[0, 1, 1], [1, 2, 0]])
MATRIX = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])


def test_confusion_matrix_by_hand():
    matrix = confusion_matrix(PREDICTION, TARGET, num_classes=3)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, MATRIX)


def test_confusion_matrix_skips_ignored_target_pixels():
    target = TARGET.copy()
    target[1, 2] = 255  # the one pixel of class 2 predicted as 0
    expected = MATRIX.copy()
    expected[2, 0] = 0
    np.testing.assert_array_equal(confusion_matrix(PREDICTION, target, 3), expected)


def test_confusion_matrix_accepts_torch_tensors_and_any_ndim():
    matrix = confusion_matrix(torch.from_numpy(PREDICTION)[None], torch.from_numpy(TARGET)[None], 3)
    np.testing.assert_array_equal(matrix, MATRIX)


@pytest.mark.parametrize(
    "prediction, target",
    [
        (np.array([0, 3]), np.array([0, 1])),  # prediction beyond the classes
        (np.array([0, -1]), np.array([0, 1])),
        (np.array([0, 1]), np.array([0, 7])),  # target neither a class nor ignored
        (np.array([0, 1]), np.array([0, 1, 1])),  # shape mismatch
        (np.array([0.0, 1.0]), np.array([0, 1])),  # not integer
    ],
)
def test_confusion_matrix_rejects_bad_input(prediction, target):
    with pytest.raises(ValueError):
        confusion_matrix(prediction, target, num_classes=3)


def test_prediction_may_be_anything_where_target_is_ignored():
    # Only scored pixels are validated; a prediction under an ignored pixel is not looked at.
    assert confusion_matrix(np.array([0, 9]), np.array([0, 255]), 3).sum() == 1


def test_summary_by_hand():
    scores = SegmentationScores(["a", "b", "c"])
    np.testing.assert_array_equal(scores.add_case(PREDICTION, TARGET, "case0"), MATRIX)
    summary = scores.summary()
    assert summary["per_class_iou"] == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 1 / 2})
    assert summary["miou"] == pytest.approx(0.5)
    assert summary["per_class_dice"] == pytest.approx({"a": 0.5, "b": 0.8, "c": 2 / 3})
    assert summary["global_dice"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # One case: the case-mean DSC equals the global DSC.
    assert summary["mean_case_dice"] == pytest.approx(summary["global_dice"])
    assert summary["pixel_accuracy"] == pytest.approx(4 / 6)
    assert summary["num_cases"] == 1 and summary["num_pixels"] == 6
    assert summary["cases"] == [{"case_id": "case0", "miou": pytest.approx(0.5), "dice": pytest.approx(59 / 90)}]
    json.dumps(summary, allow_nan=False)


def test_per_class_dicts_keep_the_class_order_in_a_written_json(tmp_path):
    classes = ["sky", "building", "pole"]  # not alphabetical, as CamVid's
    scores = SegmentationScores(classes)
    scores.add_case(PREDICTION, TARGET, "case0")
    path = atomic_write_json(tmp_path / "metrics.json", {"test": scores.summary()})
    text = path.read_text()
    written = json.loads(text)["test"]
    for key in ("per_class_iou", "per_class_dice", "per_class_case_dice"):
        assert list(written[key]) == classes, key
    assert text.index('"sky"') < text.index('"building"') < text.index('"pole"')


def test_absent_class_is_none_and_left_out_of_means():
    scores = SegmentationScores(["a", "b", "c"])
    scores.add_case(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    summary = scores.summary()
    assert summary["per_class_iou"]["c"] is None
    assert summary["per_class_dice"]["c"] is None
    assert summary["per_class_case_dice"]["c"] is None
    assert summary["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert summary["global_dice"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    json.dumps(summary, allow_nan=False)


def test_global_and_mean_case_dice_differ():
    scores = SegmentationScores(["background", "organ"])
    # Case A: organ 2 px, 1 found.  bg DSC 2*2/(2+3) = 4/5, organ DSC 2*1/(2+1) = 2/3.
    scores.add_case(np.array([1, 0, 0, 0]), np.array([1, 1, 0, 0]), "A")
    # Case B: all organ, all found.  organ DSC 1, background absent (undefined, not 0).
    scores.add_case(np.array([1, 1, 1, 1]), np.array([1, 1, 1, 1]), "B")
    summary = scores.summary()
    np.testing.assert_array_equal(scores.total, [[2, 0], [1, 5]])
    assert summary["per_class_case_dice"] == pytest.approx({"background": 4 / 5, "organ": (2 / 3 + 1) / 2})
    assert summary["mean_case_dice"] == pytest.approx((4 / 5 + 5 / 6) / 2)
    # Merged: background 2*2/(2+3), organ 2*5/(6+5).
    assert summary["per_class_dice"] == pytest.approx({"background": 4 / 5, "organ": 10 / 11})
    assert summary["global_dice"] == pytest.approx((4 / 5 + 10 / 11) / 2)
    assert summary["global_dice"] != pytest.approx(summary["mean_case_dice"])
    assert summary["cases"][0] == {"case_id": "A", "miou": pytest.approx((2 / 3 + 1 / 2) / 2),
                                   "dice": pytest.approx((4 / 5 + 2 / 3) / 2)}
    assert summary["cases"][1] == {"case_id": "B", "miou": 1.0, "dice": 1.0}


def test_empty_scores_summary_is_all_none():
    summary = SegmentationScores(["a", "b"]).summary()
    assert summary["miou"] is None and summary["mean_case_dice"] is None and summary["pixel_accuracy"] is None
    assert summary["num_cases"] == 0 and summary["cases"] == []
    json.dumps(summary, allow_nan=False)


def test_agreement():
    labels = np.array([[0, 1, 2], [2, 1, 0]])
    assert agreement(labels, labels, 3) == 1.0
    assert agreement(torch.from_numpy(labels), torch.from_numpy(labels), 3) == 1.0
    # b is the reference: class 0 IoU 1/2, class 1 IoU 2/3.
    assert agreement(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == pytest.approx(7 / 12)


def test_format_scores_table():
    scores = SegmentationScores(["sky", "building", "pole"])
    scores.add_case(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    table = format_scores_table(scores.summary())
    for name in ("sky", "building", "pole"):
        assert name in table
    assert "50.00" in table  # sky IoU
    assert "mIoU" in table and "global DSC" in table and "pixel accuracy" in table
    pole_row = next(line for line in table.splitlines() if line.startswith("pole"))
    assert pole_row.split()[1:] == ["-", "-", "-"]


def test_unlabeled_pixels_count_as_misses_of_their_class_and_the_labeled_fraction_is_reported():
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    prediction = np.array([[0, 255, 1, 255], [0, 0, 1, 1]])  # 255: filtered out, no label
    scores = SegmentationScores(["a", "b"])
    scores.add_case(prediction, target, unlabeled=255)
    summary = scores.summary()
    # a: 3 of its 4 pixels right, none predicted elsewhere -> 3 / 4; b: 2 of 3 right, 1 missed -> 2 / 3
    assert summary["per_class_iou"] == pytest.approx({"a": 3 / 4, "b": 2 / 3})
    assert summary["labeled_fraction"] == pytest.approx(5 / 7)
    assert summary["pixel_accuracy"] == pytest.approx(5 / 7)
    np.testing.assert_array_equal(scores.total, [[3, 0], [0, 2]])
    kept = SegmentationScores(["a", "b"])
    kept.add_case(np.where(prediction == 255, 0, prediction), np.where(prediction == 255, 255, target))
    assert kept.summary()["miou"] == 1.0 and "labeled_fraction" not in kept.summary()


def test_labeled_only_equals_scoring_the_kept_pixels_alone():
    target = np.array([[0, 0, 1, 1], [0, 1, 1, 255]])
    prediction = np.array([[0, 255, 1, 255], [1, 0, 1, 1]])
    scores = SegmentationScores(["a", "b"])
    scores.add_case(prediction, target, "x", unlabeled=255)
    kept = SegmentationScores(["a", "b"])
    kept.add_case(prediction, np.where(prediction == 255, 255, target), "x", unlabeled=255)
    got, want = scores.labeled_only().summary(), kept.summary()
    assert got["per_class_iou"] == want["per_class_iou"] and got["miou"] == want["miou"]
    assert got["mean_case_dice"] == want["mean_case_dice"] and got["num_pixels"] == want["num_pixels"] == 5
    assert scores.summary()["miou"] < got["miou"]  # the misses count only in the full score
