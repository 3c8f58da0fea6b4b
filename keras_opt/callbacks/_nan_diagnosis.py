"""Find where a batch first turns non-finite: weights, a layer's output, a gradient.

Used by `NaNGuard` once it gives up; also usable on its own to reproduce a
fault from the saved ``.npz`` batch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt._state import VariableSnapshot, read_float, read_value
from keras_opt.callbacks import _probe


def _finite(value: Any) -> bool:
    return bool(np.all(np.isfinite(read_value(value))))


def diagnose(model: Any, x: Any, y: Any, sample_weight: Any = None) -> dict[str, Any]:
    """Run one training forward/backward pass and report the first non-finite value.

    The model's non-trainable variables (BatchNorm statistics) are put back
    afterwards.

    Args:
        model: Compiled Keras model.
        x: Inputs of the batch.
        y: Targets of the batch.
        sample_weight: Optional sample weights.

    Returns:
        Dict with ``where`` (``"weights"``, ``"input"``, ``"output"``,
        ``"gradient"``, ``"loss"`` or ``"update"``), ``layer`` (a layer name
        or None), ``loss``, ``grad_norm`` and ``message``.
    """
    for layer in _probe.leaf_layers(model):
        for w in layer.weights:
            if not _finite(w):
                return _result("weights", layer.name, math.nan, math.nan, "has non-finite weights")
    if not all(_finite(t) for t in tf.nest.flatten(x)):
        return _result("input", None, math.nan, math.nan, "the input batch is non-finite")
    saved = VariableSnapshot.take(_probe.state_variables(model))
    try:
        return _diagnose(model, x, y, sample_weight)
    finally:
        saved.restore()


def _diagnose(model: Any, x: Any, y: Any, sample_weight: Any) -> dict[str, Any]:
    layers = _probe.top_layers(model)
    extractor = None
    try:
        extractor = _probe.intermediate_model(model, layers, "diagnose")
    except (TypeError, ValueError, AttributeError):
        extractor = None
    trainable = list(model.trainable_variables)
    outputs = _probe.run_intermediate(extractor, x) if extractor is not None else []
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = _probe.compute_loss(model, x, y, y_pred, sample_weight)
    for layer, out in zip(layers, outputs, strict=False):
        if not all(_finite(t) for t in tf.nest.flatten(out)):
            return _result("output", layer.name, math.nan, math.nan, "output is non-finite")
    loss_value = read_float(loss)
    if not math.isfinite(loss_value):
        return _result("loss", None, loss_value, math.nan, "the loss is non-finite")
    grads = tape.gradient(loss, [*trainable])
    groups = _probe.layer_groups(model)
    norm_sq = 0.0
    bad_layers = []
    for name, ids in groups:
        for i in ids:
            g = grads[i]
            if g is None:
                continue
            g = read_value(tf.convert_to_tensor(g)).astype(np.float64)
            if not np.all(np.isfinite(g)):
                bad_layers.append(name)
                break
            norm_sq += float(np.sum(g * g))
    if bad_layers:
        # Backpropagation runs from the loss backwards: the fault starts at the
        # bad layer nearest to the output.
        return _result(
            "gradient", bad_layers[-1], loss_value, math.nan, "weight gradient is non-finite"
        )
    norm = math.sqrt(norm_sq)
    if not math.isfinite(norm):
        return _result("gradient", None, loss_value, norm, "the global gradient norm overflows")
    return _result(
        "update",
        None,
        loss_value,
        norm,
        "forward pass and gradients are finite at the last good weights, so the optimizer "
        "update itself produced the non-finite values: lower the learning rate or clip "
        "gradients (`clipnorm=` on the optimizer)",
    )


def _result(where: str, layer: str | None, loss: float, norm: float, what: str) -> dict[str, Any]:
    subject = f"layer `{layer}`: {what}" if layer else what
    return {
        "where": where,
        "layer": layer,
        "loss": float(loss),
        "grad_norm": float(norm),
        "message": subject,
    }
