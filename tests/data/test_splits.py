from pathlib import Path

import pytest

from atso.data.samples import Sample, write_list_file
from atso.data.splits import Split, choose_labeled, split_folds
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
