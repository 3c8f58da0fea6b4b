"""Score KerasTuner trials on the TFLite artifact that would ship.

After each trial's ``fit``, the trial's model is converted to one TFLite
variant with `keras_opt.tflite.export` and measured from the file: size,
LiteRT latency and the task metric on held-out data. These become trial
metrics (``tflite_size_kb``, ``tflite_latency_ms``, ``tflite_<metric>``) next
to the Keras ones, and ``deploy_score`` ranks trials under budgets.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from keras_tuner.src.engine import objective as kt_objective

from keras_opt import _validation as v

__all__ = ["Deployment"]

logger = logging.getLogger(__name__)

SCORE = "deploy_score"


class Deployment:
    """What to ship, how to measure it, and the budgets a trial must meet.

    ``deploy_score`` is the TFLite metric when the artifact is within every
    budget, and ``metric - 1 - (relative excess)`` otherwise, so any trial
    inside the budgets outranks every trial outside them, and among those
    outside, the nearer one ranks higher. KerasTuner maximizes it when the
    tuner is created with ``objective=deployment.objective``.

    Args:
        eval_data: ``(x, y)``. Held-out data to measure the artifact's metric.
        representative_data: Calibration inputs for integer variants (a few
            hundred training samples); not needed for float variants.
        variant: String. The variant that ships (see `keras_opt.tflite.VARIANTS`):
            a converter variant, an AI Edge Quantizer one (``int4_weights``,
            ``dynamic_int4``, ``int8_int16act``, ``aeq:<recipe>``) or ``mixed``
            (int8 with the fewest layers kept in float to stay within
            ``mixed_budget`` of the trial's Keras metric on ``eval_data``).
        metric: String. ``"accuracy"`` (higher is better).
        max_latency_ms: Float or None. Budget on the p50 latency.
        max_size_kb: Float or None. Budget on the file size (KiB, raw bytes / 1024).
        threads: Integer >= 1. Interpreter threads for the latency.
        runs: Integer >= 1. Timed runs per artifact.
        isolation: String. Passed to `keras_opt.tflite.export` (``"variant"``
            runs each conversion in a fresh process).
        mixed_budget: Float >= 0. For ``variant="mixed"``: passed to `export`.

    Returns:
        A `Deployment`; pass it to a keras_opt tuner as ``deployment=`` and use
        ``deployment.objective`` as the tuner's objective.

    Example:
        >>> from keras_opt.tuning import Deployment
        >>> d = Deployment(eval_data=([[0.0]], [0]), variant="float16", max_size_kb=100)
        >>> d.objective.name, d.objective.direction
        ('deploy_score', 'max')
        >>> d.score({"tflite_accuracy": 0.9, "tflite_size_kb": 50.0, "tflite_latency_ms": 1.0})
        0.9
    """

    def __init__(
        self,
        eval_data: Any,
        representative_data: Any = None,
        variant: str = "int8",
        metric: str = "accuracy",
        max_latency_ms: float | None = None,
        max_size_kb: float | None = None,
        threads: int = 1,
        runs: int = 20,
        isolation: str = "variant",
        mixed_budget: float = 0.005,
    ) -> None:
        from keras_opt.tflite._variants import resolve_variants

        if not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2:
            v.fail("eval_data", "a pair (x, y)", type(eval_data).__name__, exc=TypeError)
        if not isinstance(variant, str) or "," in variant:
            v.fail("variant", "one variant name (e.g. 'int8')", variant, exc=TypeError)
        chosen = resolve_variants([variant], argument="variant")[0]
        variant = chosen.name
        if chosen.needs_representative_data and representative_data is None:
            raise ValueError(
                f"Variant {variant!r} needs calibration data. Pass `representative_data=` "
                "(a few hundred training inputs) or choose a variant without calibration "
                "('float32', 'float16', 'dynamic_int8', 'int4_weights', 'dynamic_int4'). "
                "Received: representative_data=None"
            )
        v.non_negative("mixed_budget", mixed_budget)
        v.one_of("metric", metric, ("accuracy",))
        v.positive("max_latency_ms", max_latency_ms, allow_none=True)
        v.positive("max_size_kb", max_size_kb, allow_none=True)
        v.integer("threads", threads, minimum=1)
        v.integer("runs", runs, minimum=1)
        v.one_of("isolation", isolation, ("variant", "export", "none"))
        self.eval_data = eval_data
        self.representative_data = representative_data
        self.variant = variant
        self.metric = metric
        self.max_latency_ms = max_latency_ms
        self.max_size_kb = max_size_kb
        self.threads = threads
        self.runs = runs
        self.isolation = isolation
        self.mixed_budget = float(mixed_budget)

    @property
    def objective(self) -> kt_objective.Objective:
        """KerasTuner objective: maximize ``deploy_score``."""
        return kt_objective.Objective(SCORE, direction="max")

    @property
    def metric_key(self) -> str:
        """String. Trial metric holding the artifact's task metric."""
        return f"tflite_{self.metric}"

    def score(self, metrics: dict[str, float]) -> float:
        """``deploy_score`` of one trial's measured metrics (see class docstring).

        Args:
            metrics: Dict with ``tflite_<metric>``, ``tflite_size_kb``, ``tflite_latency_ms``.

        Returns:
            Float.
        """
        value = float(metrics[self.metric_key])
        if not math.isfinite(value):
            return -math.inf
        excess = 0.0
        for key, budget in (
            ("tflite_latency_ms", self.max_latency_ms),
            ("tflite_size_kb", self.max_size_kb),
        ):
            if budget is not None and metrics[key] > budget:
                excess += metrics[key] / budget - 1.0
        return value if excess == 0.0 else value - 1.0 - excess

    def measure(self, model: Any, out_dir: str) -> dict[str, float]:
        """Export ``model`` to the variant in ``out_dir`` and return the trial metrics.

        Args:
            model: The trained trial model (stripped of training wrappers if needed).
            out_dir: String. Folder for the artifact and its report.

        Returns:
            Dict of trial metrics including ``deploy_score``.
        """
        from keras_opt.tflite import export

        result = export(
            model,
            out_dir,
            representative_data=self.representative_data,
            eval_data=tuple(self.eval_data),
            variants=[self.variant],
            threads=self.threads,
            runs=self.runs,
            isolation=self.isolation,
            mixed_budget=self.mixed_budget,
        )
        error: str | None
        if self.variant in result.left_out:  # e.g. int16x8 of a quantization-aware trial
            entry, error = None, f"{self.variant} {result.left_out[self.variant]}"
        else:
            entry = result[self.variant]
            error = entry.error
            if error is None and entry.runtime_error:
                error = f"LiteRT cannot run the {self.variant} file: {entry.runtime_error}"
            elif error is None and self.metric not in (entry.metrics or {}):
                error = f"the {self.variant} file has no measured {self.metric!r}"
        if entry is None or error:
            logger.warning("Trial artifact scored -inf: %s", error)
            metrics = {
                self.metric_key: -math.inf,
                "tflite_size_kb": math.inf,
                "tflite_latency_ms": math.inf,
            }
        else:
            metrics = {
                self.metric_key: float((entry.metrics or {})[self.metric]),
                "tflite_size_kb": (entry.size_bytes or 0) / 1024.0,
                "tflite_latency_ms": float((entry.latency_ms or {})["p50"]),
            }
        metrics[SCORE] = self.score(metrics)
        return metrics


def final_epoch_metrics(results: Any) -> dict[str, float]:
    """Keras metrics of the last epoch from a History-like result (or a dict)."""
    history = getattr(results, "history", None)
    if isinstance(history, dict):
        return {k: float(vals[-1]) for k, vals in history.items() if len(vals)}
    if isinstance(results, dict):
        return {k: float(val) for k, val in results.items()}
    return {}


def trial_artifact_dir(tuner: Any, trial_id: str) -> str:
    """Folder of a trial's TFLite artifact inside the tuner's project."""
    return os.path.join(tuner.get_trial_dir(trial_id), "tflite")
