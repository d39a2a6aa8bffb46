import gzip
import json
import os
import re

import nibabel as nib
import numpy as np
import pytest

from atso.data.description import DatasetDescription
from atso.data.volume_sources import list_decathlon, list_volume_folder
from atso.data.volumes import (
    normalise,
    read_label_volume,
    read_volume,
    volume_id,
    write_volume,
)
from atso.errors import AtsoError

SHAPE = (20, 14, 9)  # non-cubic
ZOOMS = (0.7, 0.7, 2.5)  # anisotropic: thick slices along axis 2
AFFINE = np.array(
    [
        [-0.7, 0.0, 0.0, 12.5],  # a flipped first axis and an offset, so the round trip is not trivial
        [0.0, 0.7, 0.0, -30.0],
        [0.0, 0.0, 2.5, 4.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
DESCRIPTION = DatasetDescription(name="blob", classes=["background", "blob"], remap={3: 255})


def blob_in_noise(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright ellipsoid (class 1) in noise, round in millimetres on the anisotropic grid."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(SHAPE, ZOOMS)), indexing="ij")
    labels = (((x - 7.0) / 4.0) ** 2 + ((y - 5.0) / 3.5) ** 2 + ((z - 11.0) / 7.0) ** 2 <= 1).astype(np.uint8)
    image = rng.normal(100.0, 10.0, SHAPE) + 200.0 * labels
    return image.astype(np.float32), labels


def save(path, data, affine=AFFINE, slope_inter=None):
    img = nib.Nifti1Image(data, affine)  # the zooms follow from the affine
    if slope_inter is not None:
        img.header.set_slope_inter(*slope_inter)
    nib.save(img, path)
    return path


def test_image_round_trip_keeps_shape_affine_and_data(tmp_path):
    image, _ = blob_in_noise()
    volume = read_volume(save(tmp_path / "in.nii.gz", image))
    assert volume.shape == SHAPE and volume.data.dtype == np.float32
    np.testing.assert_allclose(volume.spacing, ZOOMS, rtol=1e-6)
    assert volume.axis_codes == ("L", "A", "S")
    for name in ("out.nii.gz", "out.nii"):
        write_volume(tmp_path / name, volume.data * 2, like=volume)
        loaded = nib.load(tmp_path / name)  # plain nibabel reads what atso writes
        assert loaded.shape == SHAPE
        np.testing.assert_allclose(loaded.affine, AFFINE, atol=1e-6)
        again = read_volume(tmp_path / name)
        np.testing.assert_array_equal(again.data, image * 2)
        np.testing.assert_allclose(again.affine, volume.affine, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz", "out.nii", "out.nii.gz"]  # no temp files


def test_label_round_trip_writes_uint8_without_scaling(tmp_path):
    image, labels = blob_in_noise()
    like = read_volume(save(tmp_path / "image.nii.gz", image, slope_inter=(2.0, 1.0)))
    write_volume(tmp_path / "labels.nii.gz", labels.astype(np.int64), like=like)
    loaded = nib.load(tmp_path / "labels.nii.gz")
    assert loaded.get_data_dtype() == np.uint8
    assert (loaded.dataobj.slope, loaded.dataobj.inter) == (1.0, 0.0)
    np.testing.assert_allclose(loaded.affine, AFFINE, atol=1e-6)
    volume = read_label_volume(tmp_path / "labels.nii.gz", DESCRIPTION, expected_shape=SHAPE)
    assert volume.data.dtype == np.uint8
    np.testing.assert_array_equal(volume.data, labels)


def test_image_applies_scl_slope_and_inter(tmp_path):
    raw = np.arange(np.prod(SHAPE), dtype=np.uint8).reshape(SHAPE)
    volume = read_volume(save(tmp_path / "scaled.nii.gz", raw, slope_inter=(0.5, -10.0)))
    np.testing.assert_array_equal(volume.data, raw.astype(np.float32) * 0.5 - 10.0)


def test_labels_stored_as_float_are_rounded_but_must_be_integral(tmp_path):
    _, labels = blob_in_noise()
    near = labels.astype(np.float32) + np.float32(1e-5)
    volume = read_volume(save(tmp_path / "float.nii.gz", near), kind="label")
    np.testing.assert_array_equal(volume.data, labels)
    with pytest.raises(AtsoError, match=r"half\.nii\.gz: label volume holds non-integer values"):
        read_volume(save(tmp_path / "half.nii.gz", near + 0.5), kind="label")
    with pytest.raises(AtsoError, match=r"big\.nii\.gz: .*beyond 0\.\.255"):
        read_volume(save(tmp_path / "big.nii.gz", labels.astype(np.int16) * 300), kind="label")


def test_trailing_singleton_axis_is_squeezed(tmp_path):
    image, _ = blob_in_noise()
    volume = read_volume(save(tmp_path / "four.nii.gz", image[..., None]))
    assert volume.shape == SHAPE
    np.testing.assert_array_equal(volume.data, image)


@pytest.mark.parametrize("shape, fix", [((20, 14), "PNG"), ((20, 14, 9, 2), "split the channels")])
def test_not_3d_names_the_file_and_the_shape(tmp_path, shape, fix):
    path = save(tmp_path / "flat.nii.gz", np.zeros(shape, dtype=np.float32), affine=np.eye(4))
    expected = re.escape(f"flat.nii.gz: expected a 3D volume, got shape {shape}") + f".*{fix}"
    with pytest.raises(AtsoError, match=expected):
        read_volume(path)


def test_label_shape_differs_from_image(tmp_path):
    _, labels = blob_in_noise()
    path = save(tmp_path / "labels.nii.gz", labels[:, :, :8])
    with pytest.raises(AtsoError, match=r"labels\.nii\.gz: label volume is 20x14x8 but its image is 20x14x9"):
        read_label_volume(path, DESCRIPTION, expected_shape=SHAPE)


@pytest.mark.parametrize("offset, refused", [(0.0, False), (4e-4, False), (0.5, True)])
def test_label_affine_must_match_its_image_within_the_tolerance(tmp_path, offset, refused):
    image, labels = blob_in_noise()
    scan = read_volume(save(tmp_path / "image.nii.gz", image))
    moved = AFFINE.copy()
    moved[1, 3] += offset
    path = save(tmp_path / "labels.nii.gz", labels, affine=moved)
    if refused:
        with pytest.raises(AtsoError, match=r"labels\.nii\.gz: label volume's affine differs .* by up to 0\.5 \(tolerance 0\.001\)"):
            read_label_volume(path, DESCRIPTION, scan)
    else:
        assert read_label_volume(path, DESCRIPTION, scan).shape == SHAPE
    assert read_label_volume(path, DESCRIPTION, SHAPE).shape == SHAPE  # a bare shape checks no affine


def test_label_values_are_remapped_and_validated(tmp_path):
    _, labels = blob_in_noise()
    labels[0, 0, 0] = 3  # remapped to ignore
    volume = read_label_volume(save(tmp_path / "ok.nii.gz", labels), DESCRIPTION)
    assert volume.data[0, 0, 0] == 255 and set(np.unique(volume.data)) == {0, 1, 255}
    labels[1, 1, 1] = 7
    with pytest.raises(AtsoError, match=r"bad\.nii\.gz: label value\(s\) 7 are neither a class"):
        read_label_volume(save(tmp_path / "bad.nii.gz", labels), DESCRIPTION)


def test_unreadable_missing_and_foreign_files(tmp_path):
    image, _ = blob_in_noise()
    (tmp_path / "junk.nii.gz").write_bytes(b"not a volume at all")
    truncated = gzip.compress(nib.Nifti1Image(image, AFFINE).to_bytes())[:400]
    (tmp_path / "truncated.nii.gz").write_bytes(truncated)
    (tmp_path / "slice.png").write_bytes(b"\x89PNG")
    for name, reason in [
        ("junk.nii.gz", "cannot read image volume"),
        ("truncated.nii.gz", "cannot read image volume"),
        ("missing.nii.gz", "image volume file not found"),
        ("slice.png", "not a NIfTI file"),
    ]:
        with pytest.raises(AtsoError, match=rf"{name.replace('.', r'[.]')}: {reason}"):
            read_volume(tmp_path / name)


def test_non_finite_image_is_an_error(tmp_path):
    image, _ = blob_in_noise()
    image[3, 3, 3] = np.nan
    with pytest.raises(AtsoError, match="nan.nii.gz: image volume holds NaN"):
        read_volume(save(tmp_path / "nan.nii.gz", image))


def test_write_volume_checks_shape_and_suffix(tmp_path):
    image, _ = blob_in_noise()
    like = read_volume(save(tmp_path / "in.nii.gz", image))
    with pytest.raises(ValueError, match="differs"):
        write_volume(tmp_path / "out.nii.gz", image[:, :, :4], like=like)
    with pytest.raises(ValueError, match=".nii or .nii.gz"):
        write_volume(tmp_path / "out.png", image, like=like)


def write_decathlon(root, training, test=()):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "imagesTs").mkdir()
    image, labels = blob_in_noise()
    for case in training:
        save(root / "imagesTr" / f"{case}.nii.gz", image)
        save(root / "labelsTr" / f"{case}.nii.gz", labels)
    for case in test:
        save(root / "imagesTs" / f"{case}.nii.gz", image)
    manifest = {
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in training],
        "test": [f"./imagesTs/{c}.nii.gz" for c in test],
    }
    (root / "dataset.json").write_text(json.dumps(manifest))


def test_list_decathlon(tmp_path):
    write_decathlon(tmp_path, ["la_2", "la_1"], ["la_9"])
    training = list_decathlon(tmp_path)
    assert [s.id for s in training] == ["la_1", "la_2"]
    assert training[0].image == tmp_path / "imagesTr" / "la_1.nii.gz"
    assert training[0].mask == tmp_path / "labelsTr" / "la_1.nii.gz"
    test = list_decathlon(tmp_path, split="test")
    assert [(s.id, s.mask) for s in test] == [("la_9", None)]


def test_list_decathlon_errors_name_the_file(tmp_path):
    with pytest.raises(AtsoError, match="dataset.json: not found"):
        list_decathlon(tmp_path)
    write_decathlon(tmp_path, ["la_1", "la_2"])
    os.remove(tmp_path / "labelsTr" / "la_2.nii.gz")
    with pytest.raises(AtsoError, match=r"labelsTr/la_2\.nii\.gz: volume file not found \(listed in .*dataset\.json\)"):
        list_decathlon(tmp_path)
    with pytest.raises(AtsoError, match="lists no 'test' volumes"):
        list_decathlon(tmp_path, split="test")
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(AtsoError, match="dataset.json: cannot read it"):
        list_decathlon(tmp_path)


def test_list_volume_folder_matches_names(tmp_path):
    image, labels = blob_in_noise()
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for case in ("case_b", "case_a"):
        save(tmp_path / "images" / f"{case}_0000.nii.gz", image)
        save(tmp_path / "labels" / f"{case}.nii", labels)
    (tmp_path / "images" / "._case_a_0000.nii.gz").write_bytes(b"macOS metadata")
    samples = list_volume_folder(tmp_path / "images", tmp_path / "labels", image_suffix="_0000")
    assert [(s.id, s.mask.name) for s in samples] == [("case_a", "case_a.nii"), ("case_b", "case_b.nii")]
    os.remove(tmp_path / "labels" / "case_b.nii")
    with pytest.raises(AtsoError, match=r"case_b_0000\.nii\.gz: labeled volume has no label"):
        list_volume_folder(tmp_path / "images", tmp_path / "labels", image_suffix="_0000")
    unlabeled = list_volume_folder(tmp_path / "images", tmp_path / "labels", image_suffix="_0000", need_labels=False)
    assert [s.mask is None for s in unlabeled] == [False, True]
    assert volume_id("x/ct_7.nii") == "ct_7" and volume_id("ct_7_0000.nii.gz", "_0000") == "ct_7"


def test_normalise_modes():
    ct = np.array([[[-1000.0, -100.0, 70.0, 240.0, 3000.0]]], dtype=np.float32)
    np.testing.assert_allclose(normalise(ct, "ct", window=(-100, 240)), [[[0.0, 0.0, 0.5, 1.0, 1.0]]])
    mri = np.array([[[0.0, 0.0, 2.0, 4.0]]], dtype=np.float32)
    # Over the nonzero voxels: mean 3, std 1; applied to every voxel.
    np.testing.assert_allclose(normalise(mri, "zscore"), [[[-3.0, -3.0, -1.0, 1.0]]])
    # Over all voxels: mean 1.5, std sqrt(2.75).
    np.testing.assert_allclose(normalise(mri, "zscore", nonzero=False), (mri - 1.5) / np.sqrt(2.75), rtol=1e-6)
    np.testing.assert_array_equal(normalise(np.zeros((2, 2, 2)), "zscore"), np.zeros((2, 2, 2)))
    assert normalise(mri.astype(np.float64), "none").dtype == np.float32
    with pytest.raises(ValueError, match="ct, zscore, none"):
        normalise(mri, "minmax")


def test_volume_source_applies_include_and_exclude(tmp_path):
    from atso.config import SourceConfig
    from atso.data.volume_sources import list_volume_source

    write_decathlon(tmp_path, ["a1", "a2", "b1"])
    source = SourceConfig(root=tmp_path, layout="decathlon", split="training", exclude=["a2"])
    assert [s.id for s in list_volume_source(source)] == ["a1", "b1"]
    source = SourceConfig(root=tmp_path, layout="decathlon", split="training", include=["a"])
    assert [s.id for s in list_volume_source(source)] == ["a1", "a2"]
    with pytest.raises(AtsoError, match="layout: decathlon"):
        list_volume_source(SourceConfig(root=tmp_path, split="training"))
