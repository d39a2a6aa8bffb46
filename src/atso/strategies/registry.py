"""The one list of strategies: a name and the plan function of its generations, registered once.

The CLI's choices, the config's validation and ``atso compare`` all read :data:`STRATEGIES`. Adding a
strategy is a generation function plus :func:`register_strategy` (see :mod:`atso.strategies.builtin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from atso.strategies.plan import Job, TrainJob

Teachers = tuple[tuple[int, tuple[str, ...]], ...]  # reference fold -> the models whose mean softmax labels it


@dataclass(frozen=True)
class GenerationStep:
    """What a strategy knows when it plans generation t: the labeling to train on, the last student."""

    name: str  # the strategy's name in job ids (with '-super' for super-class pseudo-labels)
    generation: int
    folds: tuple[int, ...]
    labeling: str  # the labeling job whose pseudo-labels the students of this generation read
    previous_student: str  # the last generation's (last) student; M0 in generation 1

    @property
    def prefix(self) -> str:
        return f"{self.name}/g{self.generation}"

    def all_folds(self) -> tuple[tuple[int, str], ...]:
        """Every reference fold, pseudo-labeled by this generation's labeling."""
        return tuple((k, self.labeling) for k in self.folds)

    def labeled_by(self, model: str) -> Teachers:
        """Every reference fold labeled by one model."""
        return tuple((k, (model,)) for k in self.folds)


@dataclass(frozen=True)
class FinalStep:
    """What a strategy knows after its last generation: every labeling so far, G0's first."""

    name: str
    generations: int
    folds: tuple[int, ...]
    labelings: tuple[str, ...]
    final_labels: str  # teacher_student.final_labels: 'cross' or 'last'


GenerationPlan = Callable[[GenerationStep], "tuple[tuple[TrainJob, ...], Teachers]"]
FinalPlan = Callable[[FinalStep], "tuple[list[Job], str]"]


@dataclass(frozen=True)
class Strategy:
    """A strategy: its students and their teachers per generation, and an optional final stage.

    ``generation`` is None for a strategy without teacher-student generations (supervised: M0 alone).
    ``final`` returns the jobs after the last generation and the model the strategy delivers.
    """

    name: str
    generation: GenerationPlan | None
    final: FinalPlan | None = None


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, final: FinalPlan | None = None) -> Callable[[GenerationPlan | None], GenerationPlan | None]:
    """Register a generation function under ``name`` (used as a decorator)."""

    def register(generation: GenerationPlan | None) -> GenerationPlan | None:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        STRATEGIES[name] = Strategy(name, generation, final)
        return generation

    return register


def strategy_names() -> tuple[str, ...]:
    """The registered strategies, in registration order (the columns of a comparison)."""
    return tuple(STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The registered strategy ``name``.

    Raises:
        ValueError: no strategy has that name (listing the known ones).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
