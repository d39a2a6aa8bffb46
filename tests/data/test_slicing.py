import numpy as np
import pytest

from atso.data.slicing import VIEWS, select_training_slices, slice_volume, stack_slices, view_axis

SHAPE = (20, 14, 9)


def volume() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)


def test_views_and_axes():
    assert VIEWS == ("axial", "coronal", "sagittal")
    assert [view_axis(v) for v in VIEWS] == [2, 1, 0]
    with pytest.raises(ValueError, match="axial, coronal, sagittal"):
        view_axis("transverse")


@pytest.mark.parametrize(
    "view, expected",
    [("axial", (9, 20, 14)), ("coronal", (14, 20, 9)), ("sagittal", (20, 14, 9))],
)
def test_slice_shapes_and_content(view, expected):
    data = volume()
    slices = slice_volume(data, view)
    assert slices.shape == (expected[0], 1) + expected[1:]
    index = 3
    reference = {"axial": data[:, :, index], "coronal": data[:, index, :], "sagittal": data[index]}[view]
    np.testing.assert_array_equal(slices[index, 0], reference)


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("context", [0, 1])
def test_stack_is_the_exact_inverse_of_slice(view, context):
    data = volume()
    slices = slice_volume(data, view, context=context)
    assert slices.shape[1] == 2 * context + 1
    stacked = stack_slices(slices, view, SHAPE)
    assert stacked.shape == (2 * context + 1,) + SHAPE
    np.testing.assert_array_equal(stacked[context], data)  # the centre channel is the slice itself
    np.testing.assert_array_equal(stack_slices(slices[:, context], view, SHAPE), data)  # (S, H, W) labels


@pytest.mark.parametrize("view", VIEWS)
def test_context_channels_are_neighbours_with_edges_repeated(view):
    data = volume()
    axis = view_axis(view)
    slices = slice_volume(data, view, context=1)
    last = SHAPE[axis] - 1
    take = lambda i: np.take(data, i, axis=axis)  # noqa: E731
    np.testing.assert_array_equal(slices[0, 0], take(0))  # before the first slice: the first again
    np.testing.assert_array_equal(slices[0, 2], take(1))
    np.testing.assert_array_equal(slices[4, 0], take(3))
    np.testing.assert_array_equal(slices[4, 2], take(5))
    np.testing.assert_array_equal(slices[last, 2], take(last))  # after the last slice: the last again


def test_stack_rejects_slices_of_another_shape():
    with pytest.raises(ValueError, match="axial slices"):
        stack_slices(np.zeros((9, 2, 14, 20)), "axial", SHAPE)


def test_select_training_slices_keeps_foreground_and_a_share_of_empty():
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[5:8, 2:4, 3] = 1
    labels[0, 0, 6] = 255  # ignored: slice 6 still counts as empty
    full = select_training_slices(labels, "axial", 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(full, [3])
    everything = select_training_slices(labels, "axial", 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(everything, np.arange(9))
    # Sagittal: slices 5, 6, 7 have foreground; 17 are empty and 0.3 of them (5) are kept.
    first = select_training_slices(labels, "sagittal", 0.3, np.random.default_rng(7))
    again = select_training_slices(labels, "sagittal", 0.3, np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)
    assert len(first) == 3 + 5 and {5, 6, 7} <= set(first.tolist())
    assert np.all(np.diff(first) > 0)
    with pytest.raises(ValueError, match="empty_ratio"):
        select_training_slices(labels, "axial", 1.5, np.random.default_rng(0))
