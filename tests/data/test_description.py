import numpy as np
import pytest
import yaml

from atso.data.description import DatasetDescription, load_description
from atso.errors import AtsoError


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtin_camvid():
    camvid = load_description("camvid")
    assert camvid.name == "camvid"
    assert camvid.num_classes == 11
    assert camvid.classes[0] == "sky" and camvid.classes[-1] == "bicyclist"
    assert camvid.ignore_index == 255
    assert camvid.remap == {11: 255}
    assert camvid.mask_format == "index"
    assert len(camvid.color_palette()) == 11


def test_load_from_yaml_file(tmp_path):
    path = _write(
        tmp_path / "lesions.yaml",
        {"name": "lesions", "classes": ["background", "lesion"], "ignore_index": 9, "remap": {255: 1}},
    )
    description = load_description(path)
    assert description == DatasetDescription(name="lesions", classes=["background", "lesion"], ignore_index=9, remap={255: 1})


def test_load_relative_to_base_dir(tmp_path):
    _write(tmp_path / "two.yaml", {"classes": ["a", "b"]})
    assert load_description("two.yaml", base_dir=tmp_path).classes == ["a", "b"]


def test_missing_file_names_it_and_the_builtins(tmp_path):
    with pytest.raises(AtsoError, match="missing.yaml: dataset description not found.*camvid"):
        load_description(tmp_path / "missing.yaml")


def test_bad_yaml_and_non_mapping_name_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("classes: [a, b\n")
    with pytest.raises(AtsoError, match="broken.yaml: not valid YAML"):
        load_description(broken)
    listed = _write(tmp_path / "listed.yaml", ["a", "b"])
    with pytest.raises(AtsoError, match="listed.yaml: expected a mapping"):
        load_description(listed)


@pytest.mark.parametrize(
    "data, key",
    [
        ({"classes": ["a", "b", "c"], "ignore_index": 1}, "ignore_index 1 collides"),
        ({"classes": ["a", "b"], "palette": [[0, 0, 0]]}, "palette has 1 colours for 2 classes"),
        ({"classes": ["a", "b"], "remap": {7: 5}}, "remap 7: 5 is neither a class"),
        ({"classes": ["a", "b"], "mask_format": "color"}, "mask_format 'color' needs a palette"),
        ({"classes": ["a", "b"], "mask_format": "rgb"}, "mask_format"),
        ({"classes": []}, "classes"),
        ({"classes": ["a"], "ignore_index": 300}, "ignore_index"),
        ({"classes": ["a"], "colour": "x"}, "colour"),
    ],
)
def test_validation_errors_name_the_file_and_key(tmp_path, data, key):
    path = _write(tmp_path / "bad.yaml", data)
    with pytest.raises(AtsoError) as info:
        load_description(path)
    assert str(info.value).startswith(f"{path}: ")
    assert key in str(info.value)


def test_remap_to_ignore_index_is_allowed():
    description = DatasetDescription(classes=["a", "b"], ignore_index=200, remap={3: 200, 4: 1})
    assert description.remap == {3: 200, 4: 1}


def test_lookup_table():
    table = DatasetDescription(classes=["a", "b", "c"], remap={0: 2, 11: 255, 300: 1}).lookup_table()
    assert table.shape == (256,)
    assert table.dtype == np.int64
    assert table[0] == 2
    assert table[11] == 255
    expected = np.arange(256)
    expected[0], expected[11] = 2, 255
    np.testing.assert_array_equal(table, expected)


def test_camvid_lookup_table_maps_unlabelled_to_ignore():
    table = load_description("camvid").lookup_table()
    raw = np.array([[0, 10, 11]])
    np.testing.assert_array_equal(table[raw], [[0, 10, 255]])


def test_color_palette_without_palette_is_deterministic():
    description = DatasetDescription(classes=["a", "b", "c"])
    palette = description.color_palette()
    assert len(palette) == 3
    assert palette == DatasetDescription(classes=["x", "y", "z"]).color_palette()
    assert all(len(color) == 3 and all(0 <= v < 256 for v in color) for color in palette)
