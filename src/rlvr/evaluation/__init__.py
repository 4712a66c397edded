"""Evaluation: held-out accuracy with pass@k and maj@k, the paired comparison of two runs, and the plots and
inspection of a training run."""

from rlvr.evaluation.compare import CompareError, compare_runs, format_comparison, load_run
from rlvr.evaluation.evaluate import EvaluationError, evaluate_model, generate_completions
from rlvr.evaluation.inspect import format_report, inspect_run
from rlvr.evaluation.metrics import (
    majority_vote,
    mcnemar_exact,
    mean_pass_at_k,
    paired_bootstrap,
    paired_difference_interval,
    paired_table,
    pass_at_k,
    wilson_interval,
)
from rlvr.evaluation.plot import plot_run

__all__ = [
    "CompareError",
    "EvaluationError",
    "compare_runs",
    "evaluate_model",
    "format_comparison",
    "format_report",
    "generate_completions",
    "inspect_run",
    "load_run",
    "majority_vote",
    "mcnemar_exact",
    "mean_pass_at_k",
    "paired_bootstrap",
    "paired_difference_interval",
    "paired_table",
    "pass_at_k",
    "plot_run",
    "wilson_interval",
]
