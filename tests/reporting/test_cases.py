"""Which test cases a report shows, and how each is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from atso.data.description import DatasetDescription
from atso.data.samples import Sample
from atso.data.splits import sample_groups
from atso.modalities import for_kind
from atso.reporting.cases import CaseChange, class_legend, draw_case, pick_cases, tile_names

PALETTE = [(10, 20, 30), (250, 0, 250), (0, 250, 250)]
SHAPES = DatasetDescription(classes=["background", "square", "bar"], palette=PALETTE)
CAMVID_LIKE = DatasetDescription(classes=["sky", "road", "car"], palette=PALETTE)  # no background
BINARY = DatasetDescription(classes=["background", "atrium"], palette=PALETTE[:2], remap={2: 1})


def _changes(gains: dict[str, float]) -> list[CaseChange]:
    return [CaseChange(case_id, 0.5, 0.5 + gain) for case_id, gain in gains.items()]


def _picked(gains: dict[str, float], count: int = 2, grouping: str = "sequence") -> dict[str, list[str]]:
    samples = [Sample(case_id, Path(f"{case_id}.png")) for case_id in gains]
    chosen = pick_cases(_changes(gains), sample_groups(samples, grouping), count)
    return {direction: [change.case_id for change in picks] for direction, picks in chosen.items()}


def test_each_direction_shows_different_clips_before_repeating_one():
    gains = {"a_001": 0.30, "a_002": 0.29, "a_003": 0.28, "b_001": 0.10, "c_001": -0.2, "c_002": -0.19, "d_001": -0.01}
    assert _picked(gains) == {"gained": ["a_001", "b_001"], "lost": ["c_001", "d_001"]}


def test_one_clip_shows_frames_far_apart_never_neighbours():
    # One clip of 101 frames (CamVid's val): two picks need 101 // 5 = 20 frames between them.
    gains = {f"0016E5_{i:05d}": 0.001 * (100 - i) + 0.01 for i in range(101)}
    assert _picked(gains)["gained"] == ["0016E5_00000", "0016E5_00020"]
    few = {f"v_{i}": gain for i, gain in enumerate([0.3, 0.2, 0.1, 0.05])}  # 4 frames: still not neighbours
    assert _picked(few)["gained"] == ["v_0", "v_2"]


def test_volumes_next_to_each_other_are_different_patients():
    gains = {"la_003": 0.2, "la_004": 0.1, "la_005": 0.05, "la_006": -0.1}
    grouping = for_kind("volume", BINARY).case_grouping
    assert _picked(gains, grouping=grouping)["gained"] == ["la_003", "la_004"]
    assert _picked(gains, grouping=for_kind("image", BINARY).case_grouping)["gained"] == ["la_003", "la_005"]


def test_gained_only_where_gained_and_lost_only_where_lost():
    assert _picked({"a_1": 0.2, "b_1": 0.0, "c_1": -0.1}) == {"gained": ["a_1"], "lost": ["c_1"]}
    assert _picked({"a_1": 0.0, "b_1": -0.1, "c_1": -0.3}) == {"gained": [], "lost": ["c_1", "b_1"]}
    assert _picked({"a_1": 0.1, "b_1": 0.2}) == {"gained": ["b_1", "a_1"], "lost": []}


def _write_case(tmp_path: Path) -> tuple[Sample, np.ndarray]:
    image = np.full((8, 10, 3), 100, np.uint8)
    truth = np.zeros((8, 10), np.uint8)
    truth[2:5, 2:5], truth[:, 8] = 1, 2
    truth[7, 0] = 255
    Image.fromarray(image).save(tmp_path / "a_1.png")
    Image.fromarray(truth).save(tmp_path / "a_1-mask.png")
    return Sample("a_1", tmp_path / "a_1.png", tmp_path / "a_1-mask.png"), truth


def test_several_classes_are_drawn_in_their_palette_colours(tmp_path):
    sample, truth = _write_case(tmp_path)
    after = truth.copy()
    after[:, 8] = 1  # the bar predicted as square
    tiles = draw_case(sample, {"before": truth, "after": after}, SHAPES, min_side=10)
    assert list(tiles) == tile_names(SHAPES) == [
        "image", "truth", "before_classes", "before_errors", "after_classes", "after_errors"
    ]
    assert tuple(tiles["truth"][3, 3]) == PALETTE[1] and tuple(tiles["truth"][0, 8]) == PALETTE[2]
    assert tuple(tiles["truth"][0, 0]) == (100, 100, 100)  # background shows the image
    assert tuple(tiles["truth"][7, 0]) == (100, 100, 100)  # so do ignored pixels
    assert tuple(tiles["after_classes"][0, 8]) == PALETTE[1]
    camvid = draw_case(sample, {"before": truth, "after": after}, CAMVID_LIKE, min_side=10)
    assert tuple(camvid["truth"][0, 0]) == PALETTE[0]  # no background class: every class is painted


def test_one_foreground_class_keeps_image_and_error_maps(tmp_path):
    sample, truth = _write_case(tmp_path)
    binary = np.minimum(truth, 1)
    tiles = draw_case(sample, {"before": binary, "after": binary}, BINARY, min_side=10)
    assert list(tiles) == ["image", "before_errors", "after_errors"]


def test_legend_lists_the_painted_classes_in_class_order():
    legend = class_legend(CAMVID_LIKE)
    assert legend.ndim == 3 and legend.shape[2] == 3
    colours = [tuple(c) for c in legend.reshape(-1, 3).tolist()]
    firsts = [colours.index(colour) for colour in PALETTE]  # swatches left to right on one row
    assert firsts == sorted(firsts)
    assert PALETTE[0] not in {tuple(c) for c in class_legend(SHAPES).reshape(-1, 3).tolist()}  # background
