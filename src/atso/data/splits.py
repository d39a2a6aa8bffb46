"""Deterministic splits: the labeled subset S, the reference set R and its folds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from atso.config import Config, SourceConfig
from atso.data.samples import Sample, list_samples, read_list_file
from atso.errors import AtsoError


@dataclass(frozen=True)
class Split:
    """The sets of one run: labeled S, reference folds R(1..K) and test E."""

    labeled: list[Sample]
    reference_folds: list[list[Sample]]
    test: list[Sample]

    @property
    def reference(self) -> list[Sample]:
        return [sample for fold in self.reference_folds for sample in fold]


def choose_labeled(
    samples: list[Sample],
    count: int | None = None,
    fraction: float | None = None,
    labeled_list: Path | None = None,
    seed: int = 0,
) -> tuple[list[Sample], list[Sample]]:
    """Pick the labeled subset S by count, fraction or list file; the rest is the reference set R.

    The choice depends only on the sample ids and the seed, never on listing order.
    """
    ordered = sorted(samples, key=lambda s: s.id)
    if labeled_list is not None:
        wanted = {s.id for s in read_list_file(labeled_list)}
        unknown = wanted - {s.id for s in ordered}
        if unknown:
            raise AtsoError(f"{labeled_list}: {len(unknown)} listed sample(s) not in the train source, e.g. {sorted(unknown)[0]}")
        labeled = [s for s in ordered if s.id in wanted]
    else:
        if count is None:
            count = len(ordered) if fraction is None else max(1, int(round(fraction * len(ordered))))
        if count > len(ordered):
            raise AtsoError(f"data.labeled_count: {count} is more than the {len(ordered)} training samples")
        order = np.random.default_rng(seed).permutation(len(ordered))
        chosen = set(int(i) for i in order[:count])
        labeled = [s for i, s in enumerate(ordered) if i in chosen]
    labeled_ids = {s.id for s in labeled}
    reference = [s for s in ordered if s.id not in labeled_ids]
    return labeled, reference


def sample_groups(samples: list[Sample], grouping: str = "sample", block_size: int = 20, separator: str = "_") -> dict[str, str]:
    """The group of each sample id: the samples of one group always land in the same reference fold.

    ATSO labels fold k with students that never trained on it. Frames of a video one second apart are
    near-duplicates, so a fold drawn frame by frame is labeled by a student that trained on the frame
    next door; grouping by sequence, or by blocks of consecutive frames, keeps that promise.

    Args:
        grouping: ``sample`` (each sample alone; a volume is its own group), ``listed`` (a list file's
            ``group=NAME`` column: a patient, a clip), ``sequence`` (the id up to
            the first ``separator``: ``0016E5_07959`` -> ``0016E5``) or ``blocks`` (within a sequence,
            ``block_size`` consecutive frames in id order).
    """
    if grouping == "sample":
        return {sample.id: sample.id for sample in samples}
    if grouping == "listed":  # the list file's group=NAME; a sample without one is a group of its own
        return {sample.id: f"listed:{sample.group}" if sample.group else sample.id for sample in samples}
    sequences: dict[str, list[str]] = {}
    for sample in sorted(samples, key=lambda s: s.id):
        sequences.setdefault(sample.id.split(separator, 1)[0], []).append(sample.id)
    if grouping == "sequence":
        return {sample_id: name for name, ids in sequences.items() for sample_id in ids}
    if grouping != "blocks":
        raise AtsoError(f"teacher_student.fold_groups: {grouping!r} is not one of sample, listed, sequence, blocks")
    return {
        sample_id: f"{name}#{position // block_size}"
        for name, ids in sequences.items()
        for position, sample_id in enumerate(ids)
    }


def split_folds(
    samples: list[Sample], folds: int, seed: int = 0, groups: dict[str, str] | None = None
) -> list[list[Sample]]:
    """Partition samples into ``folds`` disjoint folds of near-equal size, deterministically by seed.

    With ``groups`` (sample id -> group), whole groups are dealt in a seeded order, each to the fold
    that holds the fewest samples so far, so no group straddles two folds.
    """
    if folds < 1:
        raise AtsoError(f"teacher_student.folds: {folds} must be at least 1")
    ordered = sorted(samples, key=lambda s: s.id)
    if groups is None:
        if samples and folds > len(samples):
            raise AtsoError(
                f"teacher_student.folds: {folds} folds need at least {folds} reference samples, there are {len(samples)}"
            )
        order = np.random.default_rng([seed, folds]).permutation(len(ordered))
        result: list[list[Sample]] = [[] for _ in range(folds)]
        for rank, index in enumerate(order):
            result[rank % folds].append(ordered[int(index)])
        return [sorted(fold, key=lambda s: s.id) for fold in result]
    members: dict[str, list[Sample]] = {}
    for sample in ordered:
        members.setdefault(groups[sample.id], []).append(sample)
    if samples and folds > len(members):
        raise AtsoError(
            f"teacher_student.fold_groups: {folds} folds need at least {folds} groups of reference samples, there are "
            f"{len(members)}; group by smaller blocks (teacher_student.fold_block_size) or use fewer folds"
        )
    names = sorted(members)
    result = [[] for _ in range(folds)]
    for index in np.random.default_rng([seed, folds, 1]).permutation(len(names)):
        smallest = min(range(folds), key=lambda k: len(result[k]))
        result[smallest].extend(members[names[int(index)]])
    return [sorted(fold, key=lambda s: s.id) for fold in result]


ListSource = Callable[[SourceConfig, bool], list[Sample]]  # a source's samples (need_masks: each has its mask)


def build_split(config: Config, list_source: ListSource = list_samples) -> Split:
    """List the samples and split them into S, the reference folds and E, as the config says.

    ``list_source`` lists one configured source: images by default; a run's modality passes its own.
    """
    train_samples = list_source(config.data.train, need_masks=True)
    labeled, reference = choose_labeled(
        train_samples,
        count=config.data.labeled_count,
        fraction=config.data.labeled_fraction,
        labeled_list=config.data.labeled_list,
        seed=config.data.split_seed,
    )
    for source in config.data.unlabeled:
        reference += list_source(source, need_masks=False)
    tests = config.data.test if isinstance(config.data.test, list) else [config.data.test] if config.data.test else []
    test = [sample for source in tests for sample in list_source(source, need_masks=True)]
    # A sample in two sets leaks: test images seen in training, or labeled ones scored as pseudo-labels.
    seen: dict[str, tuple[str, Path]] = {}
    for set_name, samples in (("labeled", labeled), ("reference", reference), ("test", test)):
        for sample in samples:
            for key in (sample.id, str(Path(sample.image).resolve())):
                if key in seen:
                    first_set, first_image = seen[key]
                    where = (
                        f"twice in the {set_name} set" if first_set == set_name
                        else f"in both the {first_set} and the {set_name} set"
                    )
                    raise AtsoError(
                        f"{sample.image}: sample '{sample.id}' is {where} (also {first_image}); a sample may be in only "
                        "one of labeled, reference and test: make data.unlabeled and data.test not overlap data.train"
                    )
                seen[key] = (set_name, sample.image)
    ts = config.teacher_student
    # The historical frame-by-frame deal stays bit-identical for ``sample``; groups deal whole groups.
    groups = None if ts.fold_groups == "sample" else sample_groups(reference, ts.fold_groups, ts.fold_block_size, ts.fold_separator)
    folds = split_folds(reference, ts.folds, seed=config.data.split_seed, groups=groups) if reference else []
    return Split(labeled=labeled, reference_folds=folds, test=test)
