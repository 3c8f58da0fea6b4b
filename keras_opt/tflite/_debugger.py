"""Per-layer quantization error of the int8 variant, and deny-listed re-export.

Wraps ``tf.lite.experimental.QuantizationDebugger``: it compares each
quantized layer with its float counterpart on the representative data and
reports ``rmse / scale`` (the error in units of the quantization step; about
0.29 is the floor for a perfectly rounded tensor). The layers with the
largest value are named; passing them as ``denylist=`` to `export` keeps them
in float and re-exports the int8 variant.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["quantization_debug", "build_debugger", "layer_errors"]

_INTERPRETER_WARNING = ".*tf.lite.Interpreter is deprecated.*"


def build_debugger(
    saved_model_dir: str,
    settings: dict,
    calibration: Sequence[np.ndarray],
    input_names: Sequence[str],
    options: Any = None,
    debug_samples: int = 32,
) -> Any:
    """A ``tf.lite.experimental.QuantizationDebugger`` over the int8 conversion.

    The model is calibrated once, here; changing ``debugger.options`` (a new
    deny-list) quantizes the calibrated model again without calibrating it again.
    """
    import tensorflow as tf

    from keras_opt.tflite._convert import signature_input_names
    from keras_opt.tflite._data import as_generator
    from keras_opt.tflite._variants import VARIANTS

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    sig = signature_input_names(saved_model_dir)
    names = list(input_names) if set(sig) == set(input_names) else sig
    VARIANTS["int8"].configure(converter, settings, as_generator(calibration, names))
    order = _signature_order(saved_model_dir, input_names)

    def debug_gen() -> Any:
        n = min(debug_samples, calibration[0].shape[0])
        for i in range(n):
            yield [calibration[j][i : i + 1] for j in order]

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INTERPRETER_WARNING)
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=debug_gen, debug_options=options
        )


def layer_errors(debugger: Any) -> list[dict[str, Any]]:
    """Run ``debugger`` and return every layer's ``rmse / scale``, the largest first.

    Returns:
        List of dicts with ``layer`` (the op's output tensor name, usable in a
        deny-list), ``op`` and ``rmse_over_scale``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INTERPRETER_WARNING)
        debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    layers: list[dict[str, Any]] = []
    for r in rows:
        mse, scale = float(r.get("mean_squared_error") or "nan"), float(r["scale"])
        value = math.sqrt(mse) / scale if scale > 0 else float("nan")
        if math.isfinite(value):
            layers.append(
                {
                    "layer": r.get("tensor_name", ""),
                    "op": r.get("op_name", ""),
                    "rmse_over_scale": value,
                }
            )
    layers.sort(key=lambda d: -float(d["rmse_over_scale"]))
    return layers


def _signature_order(saved_model_dir: str, keras_names: Sequence[str]) -> list[int]:
    from keras_opt.tflite._convert import signature_input_names

    sig = signature_input_names(saved_model_dir)
    if set(sig) == set(keras_names):
        return [list(keras_names).index(n) for n in sig]
    return list(range(len(keras_names)))


def quantization_debug(
    saved_model_dir: str,
    settings: dict,
    calibration: Sequence[np.ndarray],
    input_names: Sequence[str],
    *,
    denylist: Sequence[str] | None = None,
    analyze: bool = True,
    top_k: int = 5,
    debug_samples: int = 32,
) -> tuple[dict[str, Any] | None, bytes | None]:
    """Run the QuantizationDebugger on the full-int8 (float I/O) conversion.

    Args:
        saved_model_dir: String. SavedModel of the Keras model.
        settings: Dict. The int8 variant's converter settings.
        calibration: List of arrays (one per input), representative data.
        input_names: Keras input names, in ``calibration``'s order.
        denylist: Node (tensor) names or op types (e.g. ``"CONV_2D"``) to keep
            in float. When given, the returned bytes are the re-exported model.
        analyze: Boolean. Collect per-layer statistics.
        top_k: Integer. How many of the worst layers to name.
        debug_samples: Integer. Samples used for the statistics.

    Returns:
        Tuple ``(report, model_bytes)``. ``report`` has ``worst_layers``
        (``layer``, ``op``, ``rmse_over_scale``) and ``layers`` (all of them),
        or is None when ``analyze`` is False. ``model_bytes`` is None unless
        ``denylist`` is given.
    """
    import tensorflow as tf

    nodes = [d for d in denylist or [] if not d.isupper()]
    ops = [d for d in denylist or [] if d.isupper()]
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=nodes or None,
        denylisted_ops=ops or None,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INTERPRETER_WARNING)
        debugger = build_debugger(
            saved_model_dir, settings, calibration, input_names, options, debug_samples
        )
        report = None
        if analyze:
            layers = layer_errors(debugger)
            report = {"worst_layers": layers[:top_k], "layers": layers}
        content = bytes(debugger.get_nondebug_quantized_model()) if denylist else None
    return report, content
