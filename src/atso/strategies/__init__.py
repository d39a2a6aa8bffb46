"""Teacher-student strategies written as plans: which model labels which fold, who starts where."""

from atso.strategies.plan import EvaluateJob, Job, LabelJob, Plan, TrainJob, build_compare_plan, build_plan

__all__ = ["EvaluateJob", "Job", "LabelJob", "Plan", "TrainJob", "build_compare_plan", "build_plan"]
