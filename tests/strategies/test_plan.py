"""Each strategy's plan against the paper's Algorithm 1."""

from __future__ import annotations

import pytest

from atso.strategies.plan import M0, EvaluateJob, LabelJob, TrainJob, build_compare_plan, build_plan


def trains(plan):
    return {job.id: job for job in plan.jobs if isinstance(job, TrainJob)}


def labels(plan):
    return {job.id: job for job in plan.jobs if isinstance(job, LabelJob)}


def test_every_plan_starts_with_m0_from_scratch_on_s_only():
    for strategy in ("supervised", "self-learning", "stso", "atso"):
        plan = build_plan(strategy, generations=2)
        first = plan.jobs[0]
        assert isinstance(first, TrainJob) and first.id == M0
        assert first.init is None and first.pseudo == ()


def test_supervised_is_m0_only():
    plan = build_plan("supervised", generations=3)
    assert list(trains(plan)) == [M0]


def test_self_learning_is_continual_and_teacher_labels_all_of_r():
    plan = build_plan("self-learning", generations=3, folds=2)
    students = trains(plan)
    assert students["self-learning/g1/student"].init == M0
    assert students["self-learning/g2/student"].init == "self-learning/g1/student"
    assert students["self-learning/g3/student"].init == "self-learning/g2/student"
    assert students["self-learning/g2/student"].pseudo == ((1, "self-learning/g1/labels"), (2, "self-learning/g1/labels"))
    assert labels(plan)["self-learning/g2/labels"].teachers == (
        (1, ("self-learning/g2/student",)),
        (2, ("self-learning/g2/student",)),
    )


def test_stso_students_all_restart_from_m0():
    plan = build_plan("stso", generations=3)
    students = [job for job in trains(plan).values() if job.id != M0]
    assert len(students) == 3 and all(job.init == M0 for job in students)
    assert trains(plan)["stso/g3/student"].pseudo == ((1, "stso/g2/labels"), (2, "stso/g2/labels"))


def test_atso_matches_algorithm_1_for_two_folds():
    plan = build_plan("atso", generations=3, folds=2)
    train = trains(plan)
    label = labels(plan)
    # Lines 3 and 7: every student starts from M0.
    assert all(job.init == M0 for job in train.values() if job.id != M0)
    # Generation 1 trains on M0's labels.
    assert train["atso/g1/student-1"].pseudo == ((1, "g0/labels"),)
    assert train["atso/g1/student-2"].pseudo == ((2, "g0/labels"),)
    for t in (1, 2, 3):
        # Lines 5-6: R(1) is labeled by M(2) and R(2) by M(1).
        assert label[f"atso/g{t}/labels"].teachers == ((1, (f"atso/g{t}/student-2",)), (2, (f"atso/g{t}/student-1",)))
    for t in (2, 3):
        # Lines 8-9: M(k) fine-tunes on S + R(k) as labeled by the other fold's student.
        assert train[f"atso/g{t}/student-1"].pseudo == ((1, f"atso/g{t - 1}/labels"),)
        assert train[f"atso/g{t}/student-2"].pseudo == ((2, f"atso/g{t - 1}/labels"),)
    # Line 12: the final model trains from M0 on S plus both pseudo-labeled folds.
    final = train["atso/final/model"]
    assert final.init == M0
    assert final.pseudo == ((1, "atso/g3/labels"), (2, "atso/g3/labels"))


def test_atso_final_labels_last_reads_line_12_literally():
    final = trains(build_plan("atso", generations=3, final_labels="last"))["atso/final/model"]
    assert final.pseudo == ((1, "atso/g2/labels"), (2, "atso/g2/labels"))


def test_atso_never_labels_a_fold_with_a_model_that_trained_on_it():
    plan = build_plan("atso", generations=4, folds=4)
    train = trains(plan)
    for job in labels(plan).values():
        for fold, teachers in job.teachers:
            for teacher in teachers:
                assert fold not in {f for f, _ in train[teacher].pseudo}
    # K > 2: fold k's labeler is the ensemble of the other K-1 students.
    assert labels(plan)["atso/g2/labels"].teachers[0] == (
        1, ("atso/g2/student-2", "atso/g2/student-3", "atso/g2/student-4"))


def test_jobs_come_after_their_inputs():
    plan = build_compare_plan(generations=3, folds=3)
    seen = set()
    for job in plan.jobs:
        assert set(job.inputs) <= seen, job.id
        seen.add(job.id)
    assert len(seen) == len(plan.jobs)


def test_compare_shares_m0_and_its_labels():
    plan = build_compare_plan(generations=2)
    ids = [job.id for job in plan.jobs]
    assert ids.count(M0) == 1 and ids.count("g0/labels") == 1
    for strategy in ("self-learning", "stso", "atso"):
        rows = plan.evaluations(strategy)
        assert rows[0].id == "g0/eval"
        assert isinstance(rows[-1], EvaluateJob)


def test_format_is_a_readable_table():
    text = build_plan("atso", generations=1).format()
    assert "R1 <- atso/g1/student-2" in text and "R2 <- atso/g1/student-1" in text
    assert text.splitlines()[0].startswith("strategies: atso")


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy"):
        build_plan("mean-teacher", generations=1)


def test_superclass_variant_labels_coarsely_and_refines_to_full_classes():
    plan = build_plan("atso", generations=2, granularity="super", super_to_full=True)
    assert plan.strategies == ("atso-super",)
    label = labels(plan)
    assert label["atso-super/g0/labels"].granularity == "super"
    assert label["atso-super/g2/labels"].granularity == "super"
    assert label["atso-super/to-full/labels"].granularity == "full"
    assert label["atso-super/to-full/labels"].teachers == ((1, ("atso-super/final/model",)), (2, ("atso-super/final/model",)))
    refined = trains(plan)["atso-super/to-full/model"]
    assert refined.init == "atso-super/final/model"  # the 5 -> 19 stage continues fine-tuning that model
    assert refined.pseudo == ((1, "atso-super/to-full/labels"), (2, "atso-super/to-full/labels"))
    assert trains(plan)["atso-super/g1/student-1"].pseudo == ((1, "atso-super/g0/labels"),)


def test_compare_of_granularities_keeps_variants_apart():
    plan = build_compare_plan(1, strategies=("stso", "atso"), granularities=("full", "super"))
    assert plan.strategies == ("stso", "stso-super", "atso", "atso-super")
    ids = [job.id for job in plan.jobs]
    assert len(ids) == len(set(ids))


def test_lone_jobs_are_those_every_other_training_or_labeling_job_reads_or_follows():
    atso = build_plan("atso", 2, 2)
    # M0 and its labels feed everything; ATSO's cross labeling waits for both students and feeds the
    # next ones; an evaluation is no company (it feeds nothing). Students of one generation run side by side.
    assert atso.lone_jobs() == {"g0/m0", "g0/labels", "atso/g1/labels", "atso/g2/labels", "atso/final/model",
                                "atso/final/eval"}
    # With three strategies after generation 0 something can always run beside a job.
    assert build_compare_plan(2, 2).lone_jobs() == {"g0/m0", "g0/labels"}
