from pathlib import Path

import pytest

from atso.data.samples import Sample, write_list_file
from atso.data.splits import Split, choose_labeled, sample_groups, split_folds
from atso.errors import AtsoError


def _samples(n):
    return [Sample(f"s{i:02d}", Path(f"/data/s{i:02d}.png"), Path(f"/masks/s{i:02d}.png")) for i in range(n)]


def _ids(samples):
    return [s.id for s in samples]


def test_same_seed_same_labeled_set_regardless_of_order():
    samples = _samples(10)
    labeled, reference = choose_labeled(samples, count=3, seed=4)
    shuffled = samples[::-1][5:] + samples[::-1][:5]
    assert choose_labeled(shuffled, count=3, seed=4) == (labeled, reference)


def test_different_seed_changes_the_labeled_set():
    samples = _samples(20)
    chosen = {tuple(_ids(choose_labeled(samples, count=5, seed=seed)[0])) for seed in range(4)}
    assert len(chosen) > 1
    assert _ids(choose_labeled(samples, count=5, seed=0)[0]) != _ids(choose_labeled(samples, count=5, seed=1)[0])


def test_count_partitions_sorted_by_id():
    samples = _samples(10)
    labeled, reference = choose_labeled(samples[::-1], count=4, seed=0)
    assert len(labeled) == 4 and len(reference) == 6
    assert set(_ids(labeled)).isdisjoint(_ids(reference))
    assert sorted(_ids(labeled) + _ids(reference)) == _ids(samples)
    assert _ids(labeled) == sorted(_ids(labeled)) and _ids(reference) == sorted(_ids(reference))


@pytest.mark.parametrize("fraction, expected", [(0.25, 2), (0.5, 4), (1.0, 8), (0.01, 1)])
def test_fraction_rounds_to_a_count(fraction, expected):
    labeled, reference = choose_labeled(_samples(8), fraction=fraction, seed=0)
    assert len(labeled) == expected
    assert len(reference) == 8 - expected


def test_fraction_matches_the_same_count():
    samples = _samples(8)
    assert choose_labeled(samples, fraction=0.5, seed=3) == choose_labeled(samples, count=4, seed=3)


def test_no_rule_labels_everything():
    samples = _samples(5)
    assert choose_labeled(samples) == (samples, [])


def test_labeled_list(tmp_path):
    samples = _samples(6)
    listing = write_list_file(tmp_path / "labeled.txt", [samples[4], samples[1]])
    labeled, reference = choose_labeled(samples[::-1], labeled_list=listing, count=1)
    assert _ids(labeled) == ["s01", "s04"]
    assert _ids(reference) == ["s00", "s02", "s03", "s05"]


def test_labeled_list_with_unknown_sample(tmp_path):
    listing = tmp_path / "labeled.txt"
    listing.write_text("/elsewhere/zz.png\n/data/s01.png\n")
    with pytest.raises(AtsoError, match="labeled.txt: 1 listed sample\\(s\\) not in the train source, e.g. zz"):
        choose_labeled(_samples(3), labeled_list=listing)


def test_count_too_large():
    with pytest.raises(AtsoError, match="data.labeled_count: 6 is more than the 5 training samples"):
        choose_labeled(_samples(5), count=6)


@pytest.mark.parametrize("n, folds", [(10, 2), (7, 3), (5, 5), (11, 4), (1, 1)])
def test_split_folds_partition(n, folds):
    samples = _samples(n)
    result = split_folds(samples[::-1], folds, seed=2)
    assert len(result) == folds
    ids = [i for fold in result for i in _ids(fold)]
    assert sorted(ids) == _ids(samples)  # complete and disjoint
    sizes = [len(fold) for fold in result]
    assert max(sizes) - min(sizes) <= 1
    assert all(_ids(fold) == sorted(_ids(fold)) for fold in result)


def test_split_folds_deterministic():
    samples = _samples(12)
    assert split_folds(samples, 3, seed=1) == split_folds(samples[::-1], 3, seed=1)
    assert any(split_folds(samples, 3, seed=s) != split_folds(samples, 3, seed=1) for s in range(2, 6))


def test_split_folds_empty_reference():
    assert split_folds([], 2) == [[], []]


def test_too_many_folds():
    with pytest.raises(AtsoError, match="teacher_student.folds: 4 folds need at least 4 reference samples, there are 3"):
        split_folds(_samples(3), 4)
    with pytest.raises(AtsoError, match="teacher_student.folds: 0 must be at least 1"):
        split_folds(_samples(3), 0)


def test_split_reference_concatenates_folds():
    samples = _samples(4)
    split = Split(labeled=samples[:1], reference_folds=[samples[1:2], samples[2:]], test=[])
    assert split.reference == samples[1:]


def _video(sequences):
    return [
        Sample(f"{name}_{frame:05d}", Path(f"/data/{name}_{frame:05d}.png"))
        for name, count in sequences.items()
        for frame in range(0, 30 * count, 30)
    ]


def test_sequence_groups_take_the_id_up_to_the_separator():
    from atso.data.splits import sample_groups

    groups = sample_groups(_video({"0016E5": 3, "0006R0": 2}), "sequence")
    assert groups == {
        "0006R0_00000": "0006R0", "0006R0_00030": "0006R0",
        "0016E5_00000": "0016E5", "0016E5_00030": "0016E5", "0016E5_00060": "0016E5",
    }
    assert sample_groups(_video({"a": 2}), "sample") == {"a_00000": "a_00000", "a_00030": "a_00030"}


def test_blocks_are_consecutive_frames_within_a_sequence():
    from atso.data.splits import sample_groups

    groups = sample_groups(_video({"a": 5, "b": 3}), "blocks", block_size=2)
    assert groups == {
        "a_00000": "a#0", "a_00030": "a#0", "a_00060": "a#1", "a_00090": "a#1", "a_00120": "a#2",
        "b_00000": "b#0", "b_00030": "b#0", "b_00060": "b#1",
    }


def test_grouped_folds_keep_every_group_whole_and_balance_the_sizes():
    from atso.data.splits import sample_groups

    samples = _video({"a": 40, "b": 25, "c": 17})
    groups = sample_groups(samples, "blocks", block_size=5)
    folds = split_folds(samples, 2, seed=3, groups=groups)
    assert sorted(_ids(folds[0] + folds[1])) == sorted(_ids(samples))
    fold_of = {s.id: k for k, fold in enumerate(folds) for s in fold}
    for group in set(groups.values()):
        assert len({fold_of[i] for i, g in groups.items() if g == group}) == 1
    assert abs(len(folds[0]) - len(folds[1])) <= 5  # at most one block apart
    assert split_folds(samples[::-1], 2, seed=3, groups=groups) == folds  # listing order does not matter
    assert split_folds(samples, 2, seed=4, groups=groups) != folds


def test_grouped_folds_need_as_many_groups_as_folds():
    from atso.data.splits import sample_groups

    samples = _video({"a": 4})
    with pytest.raises(AtsoError, match="fold_groups: 2 folds need at least 2 groups"):
        split_folds(samples, 2, groups=sample_groups(samples, "sequence"))


def test_listed_groups_keep_a_list_file_s_groups_together_and_leave_the_rest_alone():
    samples = [Sample(f"s{i}", Path(f"/d/s{i}.png"), group=("patient-a" if i < 4 else "patient-b" if i < 6 else None))
               for i in range(8)]
    groups = sample_groups(samples, "listed")
    assert len(set(groups.values())) == 4  # two patients, two samples without a group
    folds = split_folds(samples, 2, seed=1, groups=groups)
    fold_of = {s.id: k for k, fold in enumerate(folds) for s in fold}
    assert len({fold_of[f"s{i}"] for i in range(4)}) == 1 and fold_of["s4"] == fold_of["s5"]
