"""Remove every compression wrapper, for export and saving."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_opt import backend
from keras_opt.optimization import _engine, _graph, _weights

__all__ = ["strip"]


def _float_copy_of_quantized(wrapper: Any) -> Any:
    inner = wrapper.layer
    config = inner.get_config()
    activation = getattr(inner, "activation", None)
    if activation is not None and "activation" in config:
        while type(activation).__name__ == "QuantizeAwareActivation":
            activation = activation.activation
        if type(activation).__name__ == "NoOpActivation":
            activation = "linear"  # TFMOT's Conv+BatchNorm transform moved it after the BN.
        config["activation"] = backend.keras.activations.serialize(
            backend.keras.activations.get(activation)
        )
    new = type(inner).from_config(config)
    new.build(wrapper.input_shape)
    values = _weights.named_variables(wrapper)
    new.set_weights([np.asarray(values[_weights.short_name(v)].numpy()) for v in new.weights])
    return new


def _strip_quantization(model: Any) -> Any:
    def replace(layer: Any) -> Any:
        kind = type(layer).__name__
        if kind in _engine.QUANTIZE_LAYERS:
            return None
        if kind in _engine.QUANTIZE_WRAPPERS:
            return _float_copy_of_quantized(layer)
        return _graph.copy_layer(layer)

    return _graph.rebuild(model, replace)


def strip(model: Any, *, keep_quantization: bool = False) -> Any:
    """Return a plain Keras model without pruning, clustering or QAT wrappers.

    Pruning masks are applied and clustered weights written into the kernels
    first, so the stripped weights are sparse / shared. QAT wrappers are removed
    too (TFMOT has no strip for QAT, model-optimization #958): the result is a
    float model with the fine-tuned weights. To export the int8 model QAT
    trained, convert the QAT model itself, or pass ``keep_quantization=True``.
    The result saves to ``.keras`` and loads back without custom objects.

    Args:
        model: A tf_keras model from `prune`, `cluster`, `quantize` or a chain
            of them (or a plain model, which is returned as a copy).
        keep_quantization: Boolean. Leave the QAT wrappers in place.

    Returns:
        A new tf_keras model.

    Raises:
        FlavorError: under Keras 3.
        TypeError: if ``model`` is not a tf_keras graph model.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> small = kopt.strip(pruned)  # doctest: +SKIP
        >>> small.save("small.keras")  # doctest: +SKIP
    """
    engine = _engine.get_engine("strip")
    backend.check_model(model)
    _graph.require_graph_model(model)
    if not isinstance(keep_quantization, bool):
        from keras_opt import _validation

        _validation.fail("keep_quantization", "a boolean", keep_quantization, exc=TypeError)
    kinds = {_engine.wrapper_kind(layer) for layer in _graph.iter_layers(model)}
    out = model
    if "prune" in kinds:
        with model.distribute_strategy.scope():  # masks may be mirrored variables
            for layer in _graph.iter_layers(model):
                if _engine.wrapper_kind(layer) == "prune":
                    layer.pruning_obj.weight_mask_op()
        out = engine.strip_pruning(out)
    if "cluster" in kinds:
        out = engine.strip_clustering(out)
    if "quantize" in kinds and not keep_quantization:
        out = _strip_quantization(out)
    if "quantize" in kinds and not keep_quantization:
        return out
    # A fresh copy: TFMOT's strip functions share the unwrapped layers with ``model``.
    with engine.quantize_scope():
        return _graph.copy_model(out, lambda layer: layer)
