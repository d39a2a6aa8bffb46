import re

import numpy as np
import pytest
from PIL import Image

from atso.config import SourceConfig
from atso.data.samples import Sample, list_samples, read_list_file, write_list_file
from atso.errors import AtsoError


def _png(path, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (20, 24, 3) if mode == "RGB" else (20, 24)
    Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(path)
    return path


def _folder(root, stems, suffix=".png", mode="RGB"):
    for stem in stems:
        _png(root / f"{stem}{suffix}", mode)
    return root


def test_folder_layout_with_masks(tmp_path):
    images = _folder(tmp_path / "images", ["b", "a", "c"])
    masks = _folder(tmp_path / "masks", ["a", "b", "c"], mode="L")
    samples = list_samples(SourceConfig(images=images, masks=masks))
    assert samples == [Sample(s, images / f"{s}.png", masks / f"{s}.png") for s in ("a", "b", "c")]


def test_folder_layout_ignores_other_files_and_accepts_jpg_images(tmp_path):
    images = tmp_path / "images"
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(_ensure(images) / "a.jpg")
    (images / "notes.txt").write_text("not an image")
    (images / "sub.png").mkdir()
    masks = _folder(tmp_path / "masks", ["a"], mode="L")
    assert list_samples(SourceConfig(images=images, masks=masks)) == [Sample("a", images / "a.jpg", masks / "a.png")]


def _ensure(folder):
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_camvid_layout(tmp_path):
    _folder(tmp_path / "train", ["0001", "0002"])
    _folder(tmp_path / "trainannot", ["0001", "0002"], mode="L")
    samples = list_samples(SourceConfig(root=tmp_path, split="train"))
    assert [s.id for s in samples] == ["0001", "0002"]
    assert samples[1].image == tmp_path / "train" / "0002.png"
    assert samples[1].mask == tmp_path / "trainannot" / "0002.png"


def test_camvid_layout_needs_the_annot_folder_for_labels(tmp_path):
    _folder(tmp_path / "test", ["0001"])
    with pytest.raises(AtsoError, match="testannot: mask folder not found"):
        list_samples(SourceConfig(root=tmp_path, split="test"))
    assert list_samples(SourceConfig(root=tmp_path, split="test"), need_masks=False) == [
        Sample("0001", tmp_path / "test" / "0001.png")
    ]


def test_list_file_layout_with_relative_paths(tmp_path):
    _folder(tmp_path / "images", ["a", "b"])
    _folder(tmp_path / "masks", ["a", "b"], mode="L")
    listing = tmp_path / "train.txt"
    listing.write_text("# labeled samples\nimages/b.png masks/b.png\n\n  images/a.png   masks/a.png  \n")
    samples = list_samples(SourceConfig(list=listing))
    assert samples == [
        Sample("a", tmp_path / "images" / "a.png", tmp_path / "masks" / "a.png"),
        Sample("b", tmp_path / "images" / "b.png", tmp_path / "masks" / "b.png"),
    ]


def test_list_file_errors_name_the_file_or_line(tmp_path):
    _folder(tmp_path / "images", ["a"])
    listing = tmp_path / "train.txt"
    listing.write_text("images/a.png\n")
    with pytest.raises(AtsoError, match="a.png: labeled image has no mask in .*train.txt"):
        list_samples(SourceConfig(list=listing))
    assert list_samples(SourceConfig(list=listing), need_masks=False)[0].mask is None
    listing.write_text("images/a.png masks/a.png\n")
    with pytest.raises(AtsoError, match="masks/a.png: mask file not found"):
        list_samples(SourceConfig(list=listing))
    listing.write_text("images/z.png\n")
    with pytest.raises(AtsoError, match="z.png: image file not found"):
        list_samples(SourceConfig(list=listing), need_masks=False)
    listing.write_text("images/a.png m.png extra\n")
    with pytest.raises(AtsoError, match="train.txt:1: expected 'image \\[mask\\] \\[group=NAME\\]', got 3 paths"):
        list_samples(SourceConfig(list=listing))
    with pytest.raises(AtsoError, match="nope.txt: list file not found"):
        list_samples(SourceConfig(list=tmp_path / "nope.txt"))


def test_mask_suffix(tmp_path):
    images = _folder(tmp_path / "images", ["a", "b"])
    masks = _folder(tmp_path / "masks", ["a_mask", "b_mask", "b"], mode="L")
    samples = list_samples(SourceConfig(images=images, masks=masks, mask_suffix="_mask"))
    assert [s.mask for s in samples] == [masks / "a_mask.png", masks / "b_mask.png"]


def test_include_and_exclude_prefixes(tmp_path):
    stems = ["0001TP_1", "0001TP_2", "0006R0_1", "0016E5_1"]
    images = _folder(tmp_path / "images", stems)
    masks = _folder(tmp_path / "masks", stems, mode="L")
    included = list_samples(SourceConfig(images=images, masks=masks, include=["0001TP", "0016"]))
    assert [s.id for s in included] == ["0001TP_1", "0001TP_2", "0016E5_1"]
    excluded = list_samples(SourceConfig(images=images, masks=masks, exclude=["0001TP_2", "0006"]))
    assert [s.id for s in excluded] == ["0001TP_1", "0016E5_1"]
    both = list_samples(SourceConfig(images=images, masks=masks, include=["0001"], exclude=["0001TP_1"]))
    assert [s.id for s in both] == ["0001TP_2"]
    with pytest.raises(AtsoError, match="no images found"):
        list_samples(SourceConfig(images=images, masks=masks, include=["zzz"]))


def test_labeled_image_without_mask_is_an_error_naming_the_image(tmp_path):
    images = _folder(tmp_path / "images", ["a", "b"])
    masks = _folder(tmp_path / "masks", ["a"], mode="L")
    with pytest.raises(AtsoError) as info:
        list_samples(SourceConfig(images=images, masks=masks))
    assert str(info.value).startswith(str(images / "b.png"))
    assert "has no mask" in str(info.value)


def test_labeled_camvid_image_without_mask_is_an_error_naming_the_image(tmp_path):
    _folder(tmp_path / "train", ["a", "b"])
    _folder(tmp_path / "trainannot", ["b"], mode="L")
    with pytest.raises(AtsoError, match="^" + re.escape(f"{tmp_path / 'train' / 'a.png'}: labeled image has no mask")):
        list_samples(SourceConfig(root=tmp_path, split="train"))


def test_labeled_source_without_mask_folder_is_an_error(tmp_path):
    images = _folder(tmp_path / "images", ["a"])
    with pytest.raises(AtsoError, match="labeled source needs 'masks'"):
        list_samples(SourceConfig(images=images))
    with pytest.raises(AtsoError, match="nomasks: mask folder not found"):
        list_samples(SourceConfig(images=images, masks=tmp_path / "nomasks"), need_masks=False)


def test_unlabeled_source_without_masks_is_fine(tmp_path):
    images = _folder(tmp_path / "images", ["b", "a"])
    assert list_samples(SourceConfig(images=images), need_masks=False) == [
        Sample("a", images / "a.png"),
        Sample("b", images / "b.png"),
    ]
    masks = _folder(tmp_path / "masks", ["a"], mode="L")
    partial = list_samples(SourceConfig(images=images, masks=masks), need_masks=False)
    assert [s.mask for s in partial] == [masks / "a.png", None]


def test_duplicate_stems_are_an_error(tmp_path):
    images = _folder(tmp_path / "images", ["a"])
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(images / "a.jpg")
    with pytest.raises(AtsoError, match="duplicate sample id 'a'"):
        list_samples(SourceConfig(images=images), need_masks=False)


def test_empty_folder_is_an_error(tmp_path):
    images = _ensure(tmp_path / "images")
    (images / "readme.txt").write_text("no images here")
    with pytest.raises(AtsoError, match="^" + re.escape(f"{images}: no images found")):
        list_samples(SourceConfig(images=images), need_masks=False)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(AtsoError, match="nowhere: image folder not found"):
        list_samples(SourceConfig(images=tmp_path / "nowhere"), need_masks=False)
    with pytest.raises(AtsoError, match="val: image folder not found"):
        list_samples(SourceConfig(root=tmp_path, split="val"), need_masks=False)


def test_write_and_read_list_file_round_trip(tmp_path):
    images = _folder(tmp_path / "images", ["a", "b"])
    masks = _folder(tmp_path / "masks", ["a", "b"], mode="L")
    samples = [Sample("a", images / "a.png", masks / "a.png"), Sample("b", images / "b.png")]
    path = write_list_file(tmp_path / "splits" / "labeled.txt", samples)
    assert read_list_file(path) == samples
    assert all(line.startswith("/") for line in path.read_text().splitlines())
    without = write_list_file(tmp_path / "images_only.txt", samples, with_masks=False)
    assert read_list_file(without) == [s.without_mask() for s in samples]
    empty = write_list_file(tmp_path / "empty.txt", [])
    assert empty.read_text() == "" and read_list_file(empty) == []


def test_list_files_take_quoted_or_tab_separated_paths_with_spaces(tmp_path):
    image = _png(tmp_path / "my images" / "a b.png")
    mask = _png(tmp_path / "my masks" / "a b.png", mode="L")
    quoted = tmp_path / "quoted.txt"
    quoted.write_text(f'"{image}" \'{mask}\'\n')
    tabbed = tmp_path / "tabbed.txt"
    tabbed.write_text(f"{image}\t{mask}\n{image.parent}/plain.png\n")
    assert read_list_file(quoted) == [Sample("a b", image, mask)]
    assert read_list_file(tabbed) == [Sample("a b", image, mask), Sample("plain", image.parent / "plain.png")]
    written = write_list_file(tmp_path / "splits" / "labeled.txt", [Sample("a b", image, mask)])
    assert read_list_file(written) == [Sample("a b", image, mask)]  # splits/ round-trips paths with spaces


def test_dangling_symlink_in_an_image_folder_is_an_error_not_a_missing_sample(tmp_path):
    folder = _folder(tmp_path / "images", ["a", "b"])
    (folder / "c.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(AtsoError, match=r"c\.png: image is a symbolic link to a missing file .*gone\.png"):
        list_samples(SourceConfig(images=folder), need_masks=False)


def test_read_list_file_with_base_dir(tmp_path):
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text("images/a.png masks/a.png\n")
    assert read_list_file(listing, base_dir=tmp_path) == [Sample("a", tmp_path / "images/a.png", tmp_path / "masks/a.png")]
    assert read_list_file(listing)[0].image == listing.parent / "images/a.png"


def test_sample_without_mask(tmp_path):
    sample = Sample("a", tmp_path / "a.png", tmp_path / "a_mask.png")
    assert sample.without_mask() == Sample("a", tmp_path / "a.png", None)
    assert sample.mask == tmp_path / "a_mask.png"


def test_excluded_images_need_no_mask(tmp_path):
    images = _folder(tmp_path / "images", ["a", "b", "unlabeled_1"])
    masks = _folder(tmp_path / "masks", ["a", "b"], mode="L")
    samples = list_samples(SourceConfig(images=images, masks=masks, exclude=["unlabeled"]))
    assert [s.id for s in samples] == ["a", "b"]
    only = list_samples(SourceConfig(images=images, masks=masks, include=["a"]))
    assert [s.id for s in only] == ["a"]
    listing = tmp_path / "train.txt"
    listing.write_text("images/a.png masks/a.png\nimages/unlabeled_1.png\n")
    assert [s.id for s in list_samples(SourceConfig(list=listing, exclude=["unlabeled"]))] == ["a"]


def test_list_file_ids_drop_the_whole_nifti_suffix(tmp_path):
    from atso.data.samples import read_list_file

    (tmp_path / "list.txt").write_text("a/case_1.nii.gz b/case_1.nii.gz\nc/case_2.nii\nd/frame.png\n")
    assert [s.id for s in read_list_file(tmp_path / "list.txt")] == ["case_1", "case_2", "frame"]


def test_a_list_file_may_name_each_sample_s_group_after_its_paths(tmp_path):
    _folder(tmp_path / "images", ["a", "b", "c"])
    _folder(tmp_path / "masks", ["a", "b", "c"], mode="L")
    listing = tmp_path / "train.txt"
    listing.write_text("images/a.png masks/a.png group=patient07\nimages/b.png masks/b.png 'group=p 8'\n"
                       "images/c.png masks/c.png\n")
    groups = {s.id: s.group for s in list_samples(SourceConfig(list=listing))}
    assert groups == {"a": "patient07", "b": "p 8", "c": None}
    listing.write_text("images/a.png\tmasks/a.png\tgroup=p 8\n")  # tab-separated: spaces belong to the fields
    assert [s.group for s in list_samples(SourceConfig(list=listing))] == ["p 8"]
    listing.write_text("images/a.png masks/a.png group=\n")
    with pytest.raises(AtsoError, match=r"train.txt:1: 'group=' names no group"):
        list_samples(SourceConfig(list=listing))
    listing.write_text("images/a.png masks/a.png extra.png group=x\n")
    with pytest.raises(AtsoError, match=r"train.txt:1: expected 'image \[mask\] \[group=NAME\]', got 3 paths"):
        list_samples(SourceConfig(list=listing))
