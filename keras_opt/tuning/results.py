"""Reading a finished search: budget ranking, the Pareto front, exporting the best trial."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from keras_opt import _validation as v

__all__ = ["trial_rows", "pareto_front", "rank_trials", "export_best"]

DEFAULT_FRONT = (
    ("tflite_accuracy", "max"),
    ("tflite_latency_ms", "min"),
    ("tflite_size_kb", "min"),
)


def trial_rows(tuner: Any) -> list[dict[str, Any]]:
    """One row per completed trial: ``trial_id``, ``hyperparameters`` and last metric values.

    Args:
        tuner: A KerasTuner tuner after ``search``.

    Returns:
        List of dicts.

    Example:
        >>> from keras_opt.tuning import trial_rows  # doctest: +SKIP
        >>> trial_rows(tuner)[0]["metrics"]["val_accuracy"]  # doctest: +SKIP
        0.95
    """
    rows = []
    for trial in tuner.oracle.trials.values():
        if str(getattr(trial, "status", "")) != "COMPLETED":
            continue
        metrics = {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
        rows.append(
            {
                "trial_id": trial.trial_id,
                "hyperparameters": dict(trial.hyperparameters.values),
                "metrics": metrics,
            }
        )
    return rows


def _check_objectives(objectives: Sequence[tuple[str, str]]) -> None:
    if not objectives:
        v.fail("objectives", "a non-empty list of (metric, 'min'|'max') pairs", objectives)
    for item in objectives:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and item[1] in ("min", "max")):
            v.fail("objectives", "(metric, 'min'|'max') pairs", item)


def pareto_front(
    rows_or_tuner: Any, objectives: Sequence[tuple[str, str]] = DEFAULT_FRONT
) -> list[dict[str, Any]]:
    """Trials that no other trial beats on every objective (the Pareto front).

    KerasTuner's ``MultiObjective`` sums objectives into one number; this
    keeps the trade-off: a trial is on the front unless another is at least as
    good on all objectives and strictly better on one.

    Args:
        rows_or_tuner: A tuner after ``search`` or rows from `trial_rows`.
        objectives: Sequence of ``(metric, "min" | "max")``. Default: TFLite
            accuracy (max), latency (min), size (min).

    Returns:
        The front's rows, best first by the first objective.

    Example:
        >>> from keras_opt.tuning import pareto_front
        >>> rows = [{"trial_id": "a", "metrics": {"acc": 0.9, "ms": 2.0}},
        ...         {"trial_id": "b", "metrics": {"acc": 0.8, "ms": 1.0}},
        ...         {"trial_id": "c", "metrics": {"acc": 0.7, "ms": 3.0}}]
        >>> [r["trial_id"] for r in pareto_front(rows, [("acc", "max"), ("ms", "min")])]
        ['a', 'b']
    """
    _check_objectives(objectives)
    rows = rows_or_tuner if isinstance(rows_or_tuner, list) else trial_rows(rows_or_tuner)

    def key(row: dict[str, Any]) -> list[float] | None:
        out = []
        for name, direction in objectives:
            value = row["metrics"].get(name)
            if value is None:
                return None
            out.append(float(value) if direction == "min" else -float(value))
        return out

    scored = [(row, k) for row in rows if (k := key(row)) is not None]
    front = []
    for row, k in scored:
        dominated = any(
            all(a <= b for a, b in zip(other, k, strict=True)) and other != k for _, other in scored
        )
        if not dominated:
            front.append((row, k))
    front.sort(key=lambda item: item[1])
    return [row for row, _ in front]


def rank_trials(
    rows_or_tuner: Any,
    metric: str = "tflite_accuracy",
    max_latency_ms: float | None = None,
    max_size_kb: float | None = None,
) -> list[dict[str, Any]]:
    """Trials within the budgets, best ``metric`` first (higher is better).

    Args:
        rows_or_tuner: A tuner after ``search`` or rows from `trial_rows`.
        metric: String. Trial metric to rank by.
        max_latency_ms: Float or None. Budget on ``tflite_latency_ms``.
        max_size_kb: Float or None. Budget on ``tflite_size_kb``.

    Returns:
        List of rows.

    Example:
        >>> from keras_opt.tuning import rank_trials
        >>> rows = [{"trial_id": "a", "metrics": {"tflite_accuracy": 0.9, "tflite_size_kb": 90}},
        ...         {"trial_id": "b", "metrics": {"tflite_accuracy": 0.8, "tflite_size_kb": 20}}]
        >>> [r["trial_id"] for r in rank_trials(rows, max_size_kb=50)]
        ['b']
    """
    v.positive("max_latency_ms", max_latency_ms, allow_none=True)
    v.positive("max_size_kb", max_size_kb, allow_none=True)
    rows = rows_or_tuner if isinstance(rows_or_tuner, list) else trial_rows(rows_or_tuner)

    def within(row: dict[str, Any]) -> bool:
        m = row["metrics"]
        if metric not in m:
            return False
        if max_latency_ms is not None and m.get("tflite_latency_ms", float("inf")) > max_latency_ms:
            return False
        return not (max_size_kb is not None and m.get("tflite_size_kb", float("inf")) > max_size_kb)

    return sorted((r for r in rows if within(r)), key=lambda r: -float(r["metrics"][metric]))


def export_best(tuner: Any, out_dir: str | os.PathLike | None = None, **export_kwargs: Any) -> Any:
    """Export the best trial's model like any other model, into ``tflite_models/``.

    Args:
        tuner: A tuner after ``search``.
        out_dir: Folder; default ``tflite_models/<project_name>``.
        **export_kwargs: Passed to `keras_opt.tflite.export` (``representative_data``,
            ``eval_data``, ``variants``, ...).

    Returns:
        `keras_opt.tflite.ExportResult`.

    Example:
        >>> from keras_opt.tuning import export_best  # doctest: +SKIP
        >>> result = export_best(tuner, representative_data=x[:200],
        ...                      eval_data=(x_test, y_test))  # doctest: +SKIP
    """
    from keras_opt.tflite import export

    model = tuner.get_best_models(num_models=1)[0]
    exporter = getattr(tuner, "_export_model", None)
    if exporter is not None:
        model = exporter(model)
    if out_dir is None:
        out_dir = os.path.join("tflite_models", str(getattr(tuner, "project_name", "best")))
    return export(model, out_dir, **export_kwargs)
