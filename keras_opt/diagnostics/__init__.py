"""Diagnostics of a model after (or outside) training.

* `check_gradients`: autodiff gradients of a layer or model against central
  finite differences in float64, per variable.
* `analyze_errors`: confusion matrix, per-class precision/recall/F1, the most
  confused class pairs and the highest-loss examples of a classifier.

Example:
    >>> from keras_opt.diagnostics import analyze_errors, check_gradients
"""

from keras_opt.diagnostics.error_analysis import ErrorReport, analyze_errors
from keras_opt.diagnostics.gradient_check import (
    GradientCheckReport,
    VariableCheck,
    check_gradients,
)

__all__ = [
    "check_gradients",
    "GradientCheckReport",
    "VariableCheck",
    "analyze_errors",
    "ErrorReport",
]
