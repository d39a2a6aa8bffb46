"""Teacher-student strategies written as plans: which model labels which fold, who starts where."""

from atso.strategies import builtin  # noqa: F401  (registers the paper's strategies)
from atso.strategies.plan import EvaluateJob, Job, LabelJob, Plan, TrainJob, build_compare_plan, build_plan, make_plan
from atso.strategies.registry import STRATEGIES, register_strategy, strategy_names

__all__ = [
    "EvaluateJob", "Job", "LabelJob", "Plan", "STRATEGIES", "TrainJob",
    "build_compare_plan", "build_plan", "make_plan", "register_strategy", "strategy_names",
]
