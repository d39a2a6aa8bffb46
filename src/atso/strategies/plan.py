"""Self-learning, STSO and ATSO as data: a plan of train, label and evaluate jobs.

Every strategy shares generation 0: M0 trains from scratch on the labeled set S, labels the reference
set R, and is scored. The strategies then differ in three choices per generation t = 1..T, exactly the
ones in the paper's Algorithm 1:

* which labeling each student trains on (``TrainJob.pseudo``: reference fold -> labeling job),
* where each student starts (``TrainJob.init``: the previous student, or M0),
* which model(s) label which fold next (``LabelJob.teachers``: fold -> models whose mean softmax labels it).

The runner executes any plan; a new strategy is a new plan, not a new loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STRATEGIES = ("supervised", "self-learning", "stso", "atso")
M0 = "g0/m0"
G0_LABELS = "g0/labels"
G0_EVAL = "g0/eval"


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
    """Generations 1..T (and ATSO's final model, and the optional super->full stage) of one strategy."""
    name = variant_name(strategy, granularity)
    jobs: list[Job] = []
    fold_ids = range(1, folds + 1)
    everything_by = lambda model: tuple((k, (model,)) for k in fold_ids)  # noqa: E731
    if granularity == "full":
        labeling = G0_LABELS
    else:
        labeling = f"{name}/g0/labels"
        jobs.append(LabelJob(labeling, name, 0, teachers=everything_by(M0), granularity=granularity))
        jobs.append(EvaluateJob(f"{name}/g0/eval", name, 0, (M0,), labeling))
    labelings = [labeling]
    previous_student = M0
    for t in range(1, generations + 1):
        prefix = f"{name}/g{t}"
        if strategy == "atso":
            students = {k: f"{prefix}/student-{k}" for k in fold_ids}
            for k, student in students.items():
                jobs.append(TrainJob(student, name, t, init=M0, pseudo=((k, labeling),)))
            # Fold k is labeled only by students that never trained on it.
            teachers = tuple((k, tuple(s for j, s in students.items() if j != k)) for k in fold_ids)
            models = tuple(students.values())
        else:
            student = f"{prefix}/student"
            init = previous_student if strategy == "self-learning" else M0
            jobs.append(TrainJob(student, name, t, init=init, pseudo=tuple((k, labeling) for k in fold_ids)))
            teachers = everything_by(student)
            models = (student,)
            previous_student = student
        jobs.append(LabelJob(f"{prefix}/labels", name, t, teachers=teachers, granularity=granularity))
        jobs.append(EvaluateJob(f"{prefix}/eval", name, t, models, f"{prefix}/labels", previous_labeling=labeling))
        labeling = f"{prefix}/labels"
        labelings.append(labeling)
    delivered = previous_student
    if strategy == "atso" and generations > 0:
        final_labeling = labelings[-1] if final_labels == "cross" else labelings[-2]
        delivered = f"{name}/final/model"
        jobs.append(TrainJob(delivered, name, generations + 1, init=M0, pseudo=tuple((k, final_labeling) for k in fold_ids)))
        jobs.append(EvaluateJob(f"{name}/final/eval", name, "final", (delivered,), labeling=None))
    if granularity == "super" and super_to_full and generations > 0:
        # The paper's 5 -> 19 stage: the delivered model relabels R with full classes and keeps fine-tuning.
        full_labels = f"{name}/to-full/labels"
        refined = f"{name}/to-full/model"
        jobs.append(LabelJob(full_labels, name, generations + 1, teachers=everything_by(delivered)))
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
        strategy: supervised, self-learning, stso or atso.
        generations: T, the number of teacher-student generations after M0.
        folds: K, the number of reference folds (ATSO labels fold k with the other folds' students).
        final_labels: ATSO's final model trains on the folds relabeled by the last students ('cross'),
            or on the labels those students trained on ('last', Algorithm 1's line 12 read literally).
        granularity: pseudo-labels of full classes or of super-classes.
        super_to_full: after super-class generations, relabel R with full classes and fine-tune once more.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    jobs = _generation_zero(folds)
    if strategy != "supervised":
        jobs += _strategy_jobs(strategy, generations, folds, final_labels, granularity, super_to_full)
    name = variant_name(strategy, granularity) if strategy != "supervised" else strategy
    return Plan((name,), generations if strategy != "supervised" else 0, folds, tuple(jobs))


def build_compare_plan(
    generations: int,
    folds: int = 2,
    final_labels: str = "cross",
    strategies: tuple[str, ...] = STRATEGIES,
    granularities: tuple[str, ...] = ("full",),
    super_to_full: bool = False,
) -> Plan:
    """Several strategies (and pseudo-label granularities) on one split and seed, sharing M0 and its labels."""
    jobs = _generation_zero(folds)
    names = []
    for strategy in strategies:
        if strategy == "supervised":
            names.append(strategy)
            continue
        for granularity in granularities:
            jobs += _strategy_jobs(strategy, generations, folds, final_labels, granularity, super_to_full)
            names.append(variant_name(strategy, granularity))
    return Plan(tuple(names), generations, folds, tuple(jobs))
