"""Self-learning, STSO and ATSO as data: a plan of train, label and evaluate jobs.

Every strategy shares generation 0: M0 trains from scratch on the labeled set S, labels the reference
set R, and is scored. The strategies then differ in three choices per generation t = 1..T, exactly the
ones in the paper's Algorithm 1:

* which labeling each student trains on (``TrainJob.pseudo``: reference fold -> labeling job),
* where each student starts (``TrainJob.init``: the previous student, or M0),
* which model(s) label which fold next (``LabelJob.teachers``: fold -> models whose mean softmax labels it).

The runner executes any plan; a new strategy is a new generation function, registered in
:mod:`atso.strategies.registry`, not a new loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from atso.strategies.registry import FinalStep, GenerationStep, get_strategy, strategy_names

if TYPE_CHECKING:
    from atso.config import Config

M0 = "g0/m0"
G0_LABELS = "g0/labels"
G0_EVAL = "g0/eval"
M0_TEST = "g0/test"  # ``atso train``: M0 scored on the test set alone (no @R, so not ``g0/eval``)


@dataclass(frozen=True)
class TrainJob:
    """Train one model from ``init`` (None: from scratch) on S plus the listed pseudo-labeled folds."""

    id: str
    strategy: str
    generation: int
    init: str | None
    pseudo: tuple[tuple[int, str], ...] = ()
    kind: str = field(default="train", init=False)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(job for job in (self.init,) if job) + tuple(labeling for _, labeling in self.pseudo)


@dataclass(frozen=True)
class LabelJob:
    """Label each reference fold with the mean softmax of the models named for it.

    ``granularity`` is ``full`` (class labels) or ``super`` (the teachers' probabilities summed within
    each super-class, so a rare class is not wiped out by a confusable neighbour; section 5.2).
    """

    id: str
    strategy: str
    generation: int
    teachers: tuple[tuple[int, tuple[str, ...]], ...]
    granularity: str = "full"
    kind: str = field(default="label", init=False)

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(model for _, models in self.teachers for model in models))


@dataclass(frozen=True)
class EvaluateJob:
    """Score models on the test set (@E, agreement with M0) and a labeling against R's truth (@R)."""

    id: str
    strategy: str
    generation: int | str
    models: tuple[str, ...]
    labeling: str | None
    previous_labeling: str | None = None
    kind: str = field(default="evaluate", init=False)

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.models + tuple(job for job in (self.labeling, self.previous_labeling) if job)


Job = TrainJob | LabelJob | EvaluateJob


@dataclass(frozen=True)
class Plan:
    """An ordered list of jobs; every job comes after the jobs it reads."""

    strategies: tuple[str, ...]
    generations: int
    folds: int
    jobs: tuple[Job, ...]

    def job(self, job_id: str) -> Job:
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(job_id)

    def evaluations(self, strategy: str) -> list[EvaluateJob]:
        """The rows of one strategy's generation table, G0 first."""
        return [j for j in self.jobs if isinstance(j, EvaluateJob) and j.strategy in (strategy, "shared")]

    def lone_jobs(self) -> set[str]:
        """Jobs on the plan's critical path alone: every other job reads them or is read by them.

        A parallel run gives such a job every core (M0, ATSO's cross labeling); the rest share them.
        Evaluations do not count as company: they feed nothing and fill the gap beside the next job.
        """
        before: dict[str, set[str]] = {}
        for job in self.jobs:  # inputs come first, so their own ancestors are known already
            before[job.id] = set(job.inputs).union(*(before[needed] for needed in job.inputs))
        return {
            job.id
            for job in self.jobs
            if all(
                other.id in before[job.id] or job.id in before[other.id] or isinstance(other, EvaluateJob)
                for other in self.jobs
                if other is not job
            )
        }

    def teachers(self) -> set[str]:
        """The models that pseudo-label some fold, and M0 (which another run may start from and label with)."""
        return {M0}.union(*(set(job.inputs) for job in self.jobs if isinstance(job, LabelJob)))

    def final_models(self) -> dict[str, list[str]]:
        """The model(s) each strategy delivers: its last evaluated models."""
        return {strategy: list(self.evaluations(strategy)[-1].models) for strategy in self.strategies}

    def format(self) -> str:
        """A readable table of the plan, to set beside the paper's Algorithm 1."""
        rows = [("job", "kind", "starts from", "data / teachers")]
        for job in self.jobs:
            if isinstance(job, TrainJob):
                data = "S" + "".join(f" + R{fold}[{labeling}]" for fold, labeling in job.pseudo)
                rows.append((job.id, "train", job.init or "scratch", data))
            elif isinstance(job, LabelJob):
                data = "; ".join(f"R{fold} <- {' + '.join(models)}" for fold, models in job.teachers)
                rows.append((job.id, "label" if job.granularity == "full" else "label (super)", "", data))
            else:
                data = "@E " + ", ".join(job.models) + (f"; @R {job.labeling}" if job.labeling else "")
                rows.append((job.id, "evaluate", "", data))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = []
        for number, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
            if number == 0:
                lines.append("-" * (sum(widths) + 6 + max(len(r[3]) for r in rows)))
        header = (
            f"strategies: {', '.join(self.strategies)}; generations T={self.generations}; "
            f"reference folds K={self.folds}"
        )
        return header + "\n" + "\n".join(lines)


def _generation_zero(folds: int) -> list[Job]:
    everything = tuple((fold, (M0,)) for fold in range(1, folds + 1))
    return [
        TrainJob(M0, "shared", 0, init=None),
        LabelJob(G0_LABELS, "shared", 0, teachers=everything),
        EvaluateJob(G0_EVAL, "shared", 0, models=(M0,), labeling=G0_LABELS),
    ]


def variant_name(strategy: str, granularity: str = "full") -> str:
    """How a strategy run with super-class pseudo-labels is named in job ids and tables."""
    return strategy if granularity == "full" else f"{strategy}-super"


def _strategy_jobs(
    strategy: str, generations: int, folds: int, final_labels: str, granularity: str = "full", super_to_full: bool = False
) -> list[Job]:
    """Generations 1..T (and the strategy's final stage, and the optional super->full stage) of one strategy."""
    plan = get_strategy(strategy)
    name = variant_name(strategy, granularity)
    jobs: list[Job] = []
    fold_ids = tuple(range(1, folds + 1))
    if granularity == "full":
        labeling = G0_LABELS
    else:
        labeling = f"{name}/g0/labels"
        jobs.append(LabelJob(labeling, name, 0, teachers=tuple((k, (M0,)) for k in fold_ids), granularity=granularity))
        jobs.append(EvaluateJob(f"{name}/g0/eval", name, 0, (M0,), labeling))
    labelings = [labeling]
    previous_student = M0
    assert plan.generation is not None, f"{strategy} has no generations"
    for t in range(1, generations + 1):
        students, teachers = plan.generation(GenerationStep(name, t, fold_ids, labeling, previous_student))
        prefix = f"{name}/g{t}"
        jobs += students
        jobs.append(LabelJob(f"{prefix}/labels", name, t, teachers=teachers, granularity=granularity))
        models = tuple(student.id for student in students)
        jobs.append(EvaluateJob(f"{prefix}/eval", name, t, models, f"{prefix}/labels", previous_labeling=labeling))
        labeling = f"{prefix}/labels"
        labelings.append(labeling)
        previous_student = models[-1]
    delivered = previous_student
    if plan.final is not None:
        final_jobs, delivered = plan.final(FinalStep(name, generations, fold_ids, tuple(labelings), final_labels))
        jobs += final_jobs
    if granularity == "super" and super_to_full and generations > 0:
        # The paper's 5 -> 19 stage: the delivered model relabels R with full classes and keeps fine-tuning.
        full_labels = f"{name}/to-full/labels"
        refined = f"{name}/to-full/model"
        jobs.append(LabelJob(full_labels, name, generations + 1, teachers=tuple((k, (delivered,)) for k in fold_ids)))
        jobs.append(TrainJob(refined, name, generations + 2, init=delivered, pseudo=tuple((k, full_labels) for k in fold_ids)))
        jobs.append(EvaluateJob(f"{name}/to-full/eval", name, "to-full", (refined,), labeling=None))
    return jobs


def build_plan(
    strategy: str,
    generations: int,
    folds: int = 2,
    final_labels: str = "cross",
    granularity: str = "full",
    super_to_full: bool = False,
) -> Plan:
    """The plan of one strategy.

    Args:
        strategy: a registered strategy (:data:`atso.strategies.registry.STRATEGIES`).
        generations: T, the number of teacher-student generations after M0.
        folds: K, the number of reference folds (ATSO labels fold k with the other folds' students).
        final_labels: ATSO's final model trains on the folds relabeled by the last students ('cross'),
            or on the labels those students trained on ('last', Algorithm 1's line 12 read literally).
        granularity: pseudo-labels of full classes or of super-classes.
        super_to_full: after super-class generations, relabel R with full classes and fine-tune once more.

    Raises:
        ValueError: the strategy is not registered.
    """
    if get_strategy(strategy).generation is None:  # M0 alone
        return Plan((strategy,), 0, folds, tuple(_generation_zero(folds)))
    jobs = _generation_zero(folds) + _strategy_jobs(strategy, generations, folds, final_labels, granularity, super_to_full)
    return Plan((variant_name(strategy, granularity),), generations, folds, tuple(jobs))


def build_compare_plan(
    generations: int,
    folds: int = 2,
    final_labels: str = "cross",
    strategies: tuple[str, ...] | None = None,
    granularities: tuple[str, ...] = ("full",),
    super_to_full: bool = False,
) -> Plan:
    """Several strategies (default: all registered) and pseudo-label granularities on one split and seed, sharing M0."""
    jobs = _generation_zero(folds)
    names = []
    for strategy in strategies if strategies is not None else strategy_names():
        if get_strategy(strategy).generation is None:
            names.append(strategy)
            continue
        for granularity in granularities:
            jobs += _strategy_jobs(strategy, generations, folds, final_labels, granularity, super_to_full)
            names.append(variant_name(strategy, granularity))
    return Plan(tuple(names), generations, folds, tuple(jobs))


def build_m0_plan(folds: int = 2) -> Plan:
    """``atso train``: M0 trained and scored on the test set; R is not pseudo-labeled (that is the first generation's work)."""
    jobs = (TrainJob(M0, "shared", 0, init=None), EvaluateJob(M0_TEST, "shared", 0, models=(M0,), labeling=None))
    return Plan(("supervised",), 0, folds, jobs)


def make_plan(config: Config, compare: bool = False, m0_only: bool = False) -> Plan:
    """The plan a config asks for: one strategy, the comparison of ``teacher_student.compare_strategies``, or M0 alone."""
    ts = config.teacher_student
    if m0_only:
        return build_m0_plan(ts.folds)
    if compare:
        return build_compare_plan(
            ts.generations, ts.folds, ts.final_labels,
            strategies=tuple(ts.compare_strategies), granularities=tuple(ts.compare_pseudo_labels),
            super_to_full=ts.super_to_full,
        )
    return build_plan(ts.strategy, ts.generations, ts.folds, ts.final_labels, ts.pseudo_labels, ts.super_to_full)
