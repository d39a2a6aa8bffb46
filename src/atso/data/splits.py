"""Deterministic splits: the labeled subset S, the reference set R and its folds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atso.data.samples import Sample, read_list_file
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


def split_folds(samples: list[Sample], folds: int, seed: int = 0) -> list[list[Sample]]:
    """Partition samples into ``folds`` disjoint folds of near-equal size, deterministically by seed."""
    if folds < 1:
        raise AtsoError(f"teacher_student.folds: {folds} must be at least 1")
    if samples and folds > len(samples):
        raise AtsoError(
            f"teacher_student.folds: {folds} folds need at least {folds} reference samples, there are {len(samples)}"
        )
    ordered = sorted(samples, key=lambda s: s.id)
    order = np.random.default_rng([seed, folds]).permutation(len(ordered))
    result: list[list[Sample]] = [[] for _ in range(folds)]
    for rank, index in enumerate(order):
        result[rank % folds].append(ordered[int(index)])
    return [sorted(fold, key=lambda s: s.id) for fold in result]
