"""The four strategies of the paper's Table 1 as generation functions (Algorithm 1, lines 4-12)."""

from __future__ import annotations

from atso.strategies.plan import M0, EvaluateJob, Job, TrainJob
from atso.strategies.registry import FinalStep, GenerationStep, Teachers, register_strategy

register_strategy("supervised")(None)  # M0 alone: the shared generation 0 is its whole plan


@register_strategy("self-learning")
def self_learning(step: GenerationStep) -> tuple[tuple[TrainJob, ...], Teachers]:
    """One student that starts from the last one, trains on every fold and relabels every fold."""
    student = f"{step.prefix}/student"
    job = TrainJob(student, step.name, step.generation, init=step.previous_student, pseudo=step.all_folds())
    return (job,), step.labeled_by(student)


@register_strategy("stso")
def stso(step: GenerationStep) -> tuple[tuple[TrainJob, ...], Teachers]:
    """Like self-learning, but every student starts again from M0."""
    student = f"{step.prefix}/student"
    job = TrainJob(student, step.name, step.generation, init=M0, pseudo=step.all_folds())
    return (job,), step.labeled_by(student)


def atso_final(step: FinalStep) -> tuple[list[Job], str]:
    """ATSO's delivered model: from M0 on every fold, labeled as ``final_labels`` says (line 12)."""
    if step.generations == 0:
        return [], M0
    final_labeling = step.labelings[-1] if step.final_labels == "cross" else step.labelings[-2]
    delivered = f"{step.name}/final/model"
    pseudo = tuple((k, final_labeling) for k in step.folds)
    return [
        TrainJob(delivered, step.name, step.generations + 1, init=M0, pseudo=pseudo),
        EvaluateJob(f"{step.name}/final/eval", step.name, "final", (delivered,), labeling=None),
    ], delivered


@register_strategy("atso", final=atso_final)
def atso(step: GenerationStep) -> tuple[tuple[TrainJob, ...], Teachers]:
    """One student per fold, each from M0 on its own fold; fold k is labeled by the students that never saw it."""
    students = {k: f"{step.prefix}/student-{k}" for k in step.folds}
    jobs = tuple(
        TrainJob(student, step.name, step.generation, init=M0, pseudo=((k, step.labeling),)) for k, student in students.items()
    )
    teachers = tuple((k, tuple(s for j, s in students.items() if j != k)) for k in step.folds)
    return jobs, teachers
