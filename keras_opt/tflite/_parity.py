"""Run a ``.tflite`` file on evaluation data and compare it with the Keras model.

Integer inputs and outputs (``int8_only``) are quantized and dequantized with
the scale and zero point stored in the file, so every variant is compared in
the model's float units.

Example:
    >>> import numpy as np
    >>> from keras_opt.tflite._parity import parity_metrics
    >>> ref = [np.array([[0.9, 0.1], [0.2, 0.8]])]
    >>> got = [np.array([[0.8, 0.2], [0.6, 0.4]])]
    >>> p, m = parity_metrics(ref, got, y=np.array([0, 1]))
    >>> round(p["max_abs_diff"], 3), p["top1_agreement"], m
    (0.4, 0.5, {'accuracy': 0.5})
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["run_tflite", "parity_metrics", "accuracy"]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Top-1 accuracy for integer or one-hot labels (binary: threshold 0.5).

    Args:
        y_true: Array of labels, shape (N,) or one-hot (N, C).
        y_pred: Array of scores, shape (N, C) or (N,)/(N, 1) for binary.

    Returns:
        Float in [0, 1].

    Example:
        >>> accuracy(np.array([1, 0]), np.array([[0.2, 0.8], [0.3, 0.7]]))
        0.5
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
        pred = (y_pred.reshape(len(y_pred), -1)[:, 0] > 0.5).astype(int)
    else:
        pred = y_pred.reshape(len(y_pred), -1).argmax(-1)
    true = y_true.argmax(-1) if y_true.ndim > 1 and y_true.shape[-1] > 1 else y_true.reshape(-1)
    return float(np.mean(pred == true))


def _ordered_outputs(names: Sequence[str], keras_names: Sequence[str] | None) -> list[str]:
    if keras_names and set(keras_names) == set(names):
        return list(keras_names)
    if all(re.fullmatch(r"output_\d+", n) for n in names):
        return sorted(names, key=lambda n: int(n.split("_")[1]))
    return list(names)


def run_tflite(
    content: bytes,
    inputs: Sequence[np.ndarray],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str] | None = None,
    threads: int = 1,
    batch_size: int = 256,
) -> list[np.ndarray]:
    """Run a TFLite model over ``inputs`` and return float outputs.

    Args:
        content: Bytes of the ``.tflite`` file.
        inputs: List of arrays, one per Keras model input, batch first.
        input_names: The Keras input names, matched to the signature's inputs.
        output_names: The Keras output names (to order the outputs), optional.
        threads: Integer. Interpreter threads.
        batch_size: Integer. Samples per invoke for a dynamic-batch model (a model
            with a fixed batch, e.g. 1, is run in batches of exactly that size).

    Returns:
        List of float32 arrays, one per output, in the Keras model's order.
    """
    from ai_edge_litert.interpreter import Interpreter

    from keras_opt.tflite._inspection import variable_tensor_count
    from keras_opt.tflite._runtime import signature_inputs

    interp = Interpreter(model_content=content, num_threads=threads)
    interp.allocate_tensors()
    # Fused LSTMs keep their state in variable tensors across invokes; every batch is
    # an independent input, as for the Keras model, so the state is reset before each.
    stateful = variable_tensor_count(content) > 0
    runner = interp.get_signature_runner()
    in_det = runner.get_input_details()
    out_det = runner.get_output_details()
    mapping, fixed = signature_inputs(in_det, input_names)
    order = _ordered_outputs(list(out_det), output_names)
    chunks: list[list[np.ndarray]] = [[] for _ in order]
    n = inputs[0].shape[0]
    step = fixed if fixed > 0 else batch_size  # a fixed-batch model takes exactly that many
    for start in range(0, n, step):
        feed = {}
        take = min(step, n - start)
        for name, arr in zip(input_names, inputs, strict=False):
            det = in_det[mapping[name]]
            x = arr[start : start + step]
            if fixed > 0 and take < step:  # pad the last batch; its extra rows are dropped
                x = np.concatenate([x, np.repeat(x[-1:], step - take, axis=0)])
            dtype = np.dtype(det["dtype"])
            scale, zero = det["quantization"]
            if dtype.kind in "iu" and x.dtype.kind == "f" and scale:
                info = np.iinfo(dtype)
                x = np.clip(np.round(x / scale + zero), info.min, info.max)
            feed[mapping[name]] = x.astype(dtype)
        if stateful:
            interp.reset_all_variables()
        out = runner(**feed)
        for i, name in enumerate(order):
            y = out[name]
            scale, zero = out_det[name]["quantization"]
            if np.dtype(out_det[name]["dtype"]).kind in "iu" and scale:
                y = (y.astype(np.float32) - zero) * scale
            chunks[i].append(np.asarray(y, dtype=np.float32)[:take])
    return [np.concatenate(c) for c in chunks]


def parity_metrics(
    keras_outputs: Sequence[np.ndarray],
    tflite_outputs: Sequence[np.ndarray],
    y: np.ndarray | None = None,
    metric: str | Callable[[Any, Any], float] = "accuracy",
) -> tuple[dict[str, float | None], dict[str, float]]:
    """Compare outputs and compute the task metric on the first output.

    Args:
        keras_outputs: List of arrays from the Keras model.
        tflite_outputs: List of arrays from the TFLite model, same order.
        y: Labels or None (no task metric then).
        metric: ``"accuracy"`` or a callable ``metric(y_true, y_pred) -> float``.

    Returns:
        Tuple ``(parity, metrics)``: parity has ``max_abs_diff`` (over all
        outputs), ``mean_abs_diff`` and ``top1_agreement`` (first output, None
        for single-unit outputs); metrics maps the metric name to its value.
    """
    diffs = [
        np.abs(np.asarray(a, np.float64) - b)
        for a, b in zip(keras_outputs, tflite_outputs, strict=False)
    ]
    ref, got = np.asarray(keras_outputs[0]), np.asarray(tflite_outputs[0])
    top1 = None
    if ref.ndim >= 2 and ref.shape[-1] > 1:
        top1 = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    parity: dict[str, float | None] = {
        "max_abs_diff": float(max(d.max() for d in diffs)),
        "mean_abs_diff": float(np.mean([d.mean() for d in diffs])),
        "top1_agreement": top1,
    }
    metrics: dict[str, float] = {}
    if y is not None:
        fn = accuracy if metric == "accuracy" else metric
        name = "accuracy" if metric == "accuracy" else getattr(metric, "__name__", "metric")
        metrics[name] = float(fn(y, got))  # type: ignore[operator]
    return parity, metrics
