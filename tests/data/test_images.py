import numpy as np
import pytest
from PIL import Image

from atso.data.description import DatasetDescription, load_description
from atso.data.images import (
    image_size,
    overlay,
    read_image,
    read_label_map,
    read_mask,
    write_label_png,
    write_rgb_png,
)
from atso.errors import AtsoError

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
COLOR_DESCRIPTION = DatasetDescription(
    classes=["background", "lesion"],
    palette=[(0, 0, 0), (255, 0, 0)],
    mask_format="color",
    ignore_colors=[(255, 255, 255)],
)


def _save(path, array, mode=None):
    img = Image.fromarray(np.asarray(array))
    if mode is not None:
        img = img.convert(mode)
    img.save(path)
    return path


def test_label_png_round_trip_keeps_indices_and_ignore(tmp_path):
    labels = np.array([[0, 1, 2], [255, 2, 0]], dtype=np.uint8)
    path = write_label_png(tmp_path / "out" / "a.png", labels, PALETTE)
    np.testing.assert_array_equal(read_label_map(path, num_classes=3), labels)
    with Image.open(path) as img:
        assert img.mode == "P"
        np.testing.assert_array_equal(np.array(img), labels)  # pixel values are the indices
        palette = img.getpalette()
    assert palette[3:6] == [0, 255, 0]
    assert palette[255 * 3 : 255 * 3 + 3] == [0, 0, 0]  # ignored pixels are drawn black
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]  # no temp file left behind


def test_write_label_png_rejects_values_beyond_8_bits(tmp_path):
    with pytest.raises(ValueError):
        write_label_png(tmp_path / "a.png", np.array([[0, 300]]), PALETTE)


def test_read_label_map_rejects_out_of_range(tmp_path):
    path = write_label_png(tmp_path / "a.png", np.array([[0, 5]], dtype=np.uint8), PALETTE)
    with pytest.raises(AtsoError, match=r"a\.png: label value\(s\) 5 are neither a class \(0\.\.2\)"):
        read_label_map(path, num_classes=3)


def test_read_mask_camvid_remaps_unlabelled_to_ignore(tmp_path):
    path = _save(tmp_path / "m.png", np.array([[0, 3, 11], [10, 11, 1]], dtype=np.uint8))
    labels = read_mask(path, load_description("camvid"), expected_size=(2, 3))
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, [[0, 3, 255], [10, 255, 1]])


def test_read_mask_palette_image_uses_indices(tmp_path):
    path = write_label_png(tmp_path / "m.png", np.array([[0, 1], [2, 255]], dtype=np.uint8), PALETTE)
    np.testing.assert_array_equal(read_mask(path, load_description("camvid")), [[0, 1], [2, 255]])


def test_read_mask_accepts_16_bit_index_masks(tmp_path):
    path = _save(tmp_path / "m.png", np.array([[0, 3], [11, 2]], dtype=np.uint16))
    np.testing.assert_array_equal(read_mask(path, load_description("camvid")), [[0, 3], [255, 2]])


def test_read_mask_names_file_and_bad_values(tmp_path):
    path = _save(tmp_path / "m.png", np.array([[0, 12, 13]], dtype=np.uint8))
    with pytest.raises(AtsoError) as info:
        read_mask(path, load_description("camvid"))
    message = str(info.value)
    assert message.startswith(str(path))
    assert "12, 13 are neither a class (0..10) nor the ignore index 255" in message
    assert "remap" in message


def test_read_mask_size_mismatch(tmp_path):
    path = _save(tmp_path / "m.png", np.zeros((2, 3), dtype=np.uint8))
    with pytest.raises(AtsoError, match=r"m\.png: mask is 3x2 but its image is 5x4"):
        read_mask(path, load_description("camvid"), expected_size=(4, 5))


def test_read_mask_decodes_colors(tmp_path):
    rgb = np.array([[[0, 0, 0], [255, 0, 0]], [[255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    path = _save(tmp_path / "m.png", rgb)
    np.testing.assert_array_equal(read_mask(path, COLOR_DESCRIPTION), [[0, 1], [255, 1]])


def test_read_mask_unknown_color(tmp_path):
    rgb = np.array([[[0, 0, 0], [0, 128, 0]]], dtype=np.uint8)
    path = _save(tmp_path / "m.png", rgb)
    with pytest.raises(AtsoError, match=r"m\.png: colour \(0, 128, 0\) .*ignore_colors"):
        read_mask(path, COLOR_DESCRIPTION)


def test_rgb_mask_in_index_mode(tmp_path):
    path = _save(tmp_path / "m.png", np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(AtsoError, match="mask_format: color"):
        read_mask(path, load_description("camvid"))


@pytest.mark.parametrize("reader", [read_image, image_size, lambda p: read_mask(p, load_description("camvid"))])
def test_missing_file(tmp_path, reader):
    with pytest.raises(AtsoError, match=r"nope\.png: \w+ file not found"):
        reader(tmp_path / "nope.png")


def test_corrupt_files(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes())
    with pytest.raises(AtsoError, match=r"garbage\.png: cannot read image .*replace or remove the file"):
        read_image(garbage)
    with pytest.raises(AtsoError, match=r"garbage\.png: cannot read image"):
        image_size(garbage)

    whole = _save(tmp_path / "whole.png", np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(AtsoError, match=r"truncated\.png: cannot read image"):
        read_image(truncated)
    with pytest.raises(AtsoError, match=r"truncated\.png: cannot read mask"):
        read_mask(truncated, load_description("camvid"))
    with pytest.raises(AtsoError, match=r"truncated\.png: cannot read label map"):
        read_label_map(truncated, num_classes=3)


def test_read_image_converts_to_rgb(tmp_path):
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    image = read_image(_save(tmp_path / "gray.png", gray))
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 1], gray)

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 7
    image = read_image(_save(tmp_path / "rgba.png", rgba))
    assert image.shape == (2, 2, 3)
    assert (image[..., 0] == 7).all()

    wide = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    image = read_image(_save(tmp_path / "wide.png", wide))
    np.testing.assert_array_equal(image[..., 2], [[0, 64], [128, 255]])  # scaled by the maximum


def test_image_size_and_rgb_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    path = write_rgb_png(tmp_path / "rgb.png", rgb)
    assert image_size(path) == (3, 5)
    np.testing.assert_array_equal(read_image(path), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["rgb.png"]


def test_overlay_blends_only_labelled_pixels():
    image = np.full((1, 3, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 1, 255]])
    blended = overlay(image, labels, PALETTE, alpha=0.5)
    np.testing.assert_array_equal(blended, [[[178, 50, 50], [50, 178, 50], [100, 100, 100]]])


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_verify_image_catches_a_truncated_file_without_reading_masks(tmp_path, suffix):
    from atso.data.images import verify_image

    path = tmp_path / f"image{suffix}"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3)).astype(np.uint8)).save(path)
    assert verify_image(path) == (30, 40)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    assert image_size(path) == (30, 40)  # the header alone still reads: that is why preflight verifies
    with pytest.raises(AtsoError, match=rf"image{suffix}: cannot read image"):
        verify_image(path)
