"""The ``mixed`` variant: full int8, except the fewest layers that keep it within budget.

Plain int8 can lose accuracy on a few layers (outlier weights, wide activation
ranges). ``mixed`` ranks every quantized layer by its quantization error, as
measured by TensorFlow's ``QuantizationDebugger`` (``rmse / scale``: the error
in quantization steps, see `_debugger`), and keeps the
smallest prefix of that ranking in float such that the file's metric on
``eval_data`` is at most ``budget`` below the float (Keras) model's. The model
is calibrated once; each candidate deny-list is quantized again from the same
calibration and evaluated with LiteRT. The search doubles the number of kept
layers until the budget is met, then bisects, so it converts O(log layers)
candidates. Every try, the kept layers and why they were kept go to the
manifest (``entry["mixed"]``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["mixed_int8", "MixedBudgetError", "DEFAULT_MIXED_BUDGET"]


class MixedBudgetError(ValueError):
    """No prefix of the ranking meets the budget; ``report`` holds the tries."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


DEFAULT_MIXED_BUDGET = 0.005
"""Default budget of ``mixed``: half a point of accuracy below the float model."""


def _dedupe(layers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for layer in layers:
        if layer["layer"] and layer["layer"] not in seen:
            seen.add(layer["layer"])
            out.append(dict(layer))
    return out


def mixed_int8(
    saved_model_dir: str,
    settings: dict,
    calibration: Sequence[np.ndarray],
    input_names: Sequence[str],
    *,
    eval_inputs: Sequence[np.ndarray],
    y: np.ndarray,
    reference: float,
    budget: float = DEFAULT_MIXED_BUDGET,
    metric: str | Callable[[Any, Any], float] = "accuracy",
    output_names: Sequence[str] | None = None,
    threads: int = 1,
) -> tuple[bytes, dict[str, Any]]:
    """Build the ``mixed`` file: int8 with the fewest high-error layers kept in float.

    Args:
        saved_model_dir: String. SavedModel of the Keras model.
        settings: Dict. The int8 converter settings (`Variant.converter_settings`).
        calibration: List of arrays (one per input): representative data.
        input_names: Keras input names, in ``calibration``'s order.
        eval_inputs: List of arrays (one per input): the held-out inputs.
        y: Array. Their labels.
        reference: Float. The float model's metric on the same data.
        budget: Float >= 0. How far below ``reference`` the file may be (0.005:
            half a point of accuracy).
        metric: ``"accuracy"`` or a callable ``metric(y_true, y_pred) -> float``
            (higher is better).
        output_names: Keras output names (to order the TFLite outputs).
        threads: Integer. LiteRT threads for the evaluation.

    Returns:
        Tuple ``(model_bytes, report)``. ``report`` has ``budget``,
        ``reference``, ``threshold``, ``metric``, ``int8_metric`` (nothing kept),
        ``kept_float`` (layer, op, rank, rmse_over_scale, why), ``tries`` (kept
        count, metric, within budget), ``ranking`` (the 20 worst layers) and
        ``summary``.

    Raises:
        ValueError: if no prefix of the ranking meets the budget (the message
            gives the best metric reached), or the debugger finds no layer.
    """
    import tensorflow as tf

    from keras_opt.tflite._debugger import build_debugger, layer_errors
    from keras_opt.tflite._parity import accuracy, run_tflite

    fn = accuracy if metric == "accuracy" else metric
    name = "accuracy" if metric == "accuracy" else getattr(metric, "__name__", "metric")
    threshold = float(reference) - float(budget)
    debugger = build_debugger(saved_model_dir, settings, calibration, input_names)
    ranking = _dedupe(layer_errors(debugger))
    if not ranking:
        raise ValueError("The QuantizationDebugger found no quantized layer to rank.")
    tries: dict[int, dict[str, Any]] = {}
    files: dict[int, bytes] = {}

    def evaluate(k: int) -> bool:
        if k not in tries:
            nodes = [layer["layer"] for layer in ranking[:k]]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
                if k:
                    # A new deny-list re-quantizes the calibrated model (no new calibration).
                    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                        denylisted_nodes=nodes
                    )
                content = bytes(debugger.get_nondebug_quantized_model())
            outs = run_tflite(
                content, eval_inputs, input_names=input_names, output_names=output_names,
                threads=threads,
            )  # fmt: skip
            value = float(fn(y, outs[0]))  # type: ignore[operator]
            files[k] = content
            tries[k] = {
                "kept": k,
                name: value,
                "within_budget": bool(value >= threshold - 1e-12),
            }
        return bool(tries[k]["within_budget"])

    # The debug model needs one quantized layer left, so at most all but one are kept.
    most = len(ranking) - 1
    lo, hi = -1, None  # lo: largest failing count, hi: smallest passing count
    k = 0
    while k <= most:
        if evaluate(k):
            hi = k
            break
        lo = k
        k = 1 if k == 0 else min(2 * k, most) if k < most else most + 1
    report: dict[str, Any] = {
        "metric": name,
        "reference": float(reference),
        "budget": float(budget),
        "threshold": threshold,
        "int8_metric": tries[0][name],
        "kept_float": [],
        "layers_ranked": len(ranking),
        "tries": [],
        "ranking": ranking[:20],
        "summary": "",
        "ranked_by": "tf.lite.experimental.QuantizationDebugger rmse/scale per layer",
    }
    if hi is None:
        best = max(tries.values(), key=lambda t: t[name])
        report["tries"] = [tries[k] for k in sorted(tries)]
        report["summary"] = "no selection of layers kept in float meets the budget"
        raise MixedBudgetError(
            f"mixed: no selection of layers kept in float meets the budget. The float model's "
            f"{name} is {reference:.4f} (budget {budget:g}: at least {threshold:.4f}); int8 "
            f"gives {tries[0][name]:.4f} and the best try ({best['kept']} of {len(ranking)} "
            f"layers kept in float) {best[name]:.4f}. Ship float16 or dynamic_int8, or pass a "
            "larger mixed budget.",
            report,
        )
    while hi - lo > 1:  # the smallest passing count, assuming more kept layers never hurt
        mid = (lo + hi) // 2
        if evaluate(mid):
            hi = mid
        else:
            lo = mid
    kept = []
    for rank, layer in enumerate(ranking[:hi], start=1):
        before = tries.get(rank - 1)
        why = f"rank {rank} by rmse/scale ({layer['rmse_over_scale']:.3g} quantization steps)"
        if before is not None:
            why += (
                f"; with {rank - 1} layer(s) kept, {name} was {before[name]:.4f} < {threshold:.4f}"
            )
        kept.append({**layer, "rank": rank, "why": why})
    int8_value = tries[0][name]
    chosen = tries[hi][name]
    if hi == 0:
        summary = (
            f"plain int8 is within budget ({name} {int8_value:.4f} >= {threshold:.4f}): no layer "
            "kept in float"
        )
    else:
        summary = (
            f"int8 {name} {int8_value:.4f} is below {threshold:.4f} (float {reference:.4f} - "
            f"{budget:g}); keeping the {hi} layer(s) with the largest quantization error in "
            f"float gives {chosen:.4f}, and fewer do not reach the budget"
        )
    report.update(
        {"kept_float": kept, "tries": [tries[k] for k in sorted(tries)], "summary": summary}
    )
    return files[hi], report
