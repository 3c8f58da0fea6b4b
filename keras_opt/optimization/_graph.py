"""Rebuild a Functional/Sequential graph layer by layer.

TFMOT's own ``clone_model`` based helpers stop at nested models (TFMOT #957)
and there is no way to drop a layer from a graph with them. `rebuild` walks the
graph node by node, inlines nested graph models, and lets a callback replace
each layer, or drop it (identity), which is how QAT wrappers are removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from keras_opt import _validation
from keras_opt.backend import keras

Replace = Callable[[Any], Any]
"""Maps an old layer to a new layer, or to None to pass its input through."""


def is_graph_model(model: Any) -> bool:
    """True for Sequential and Functional models (not subclassed ones)."""
    return isinstance(model, keras.Model) and bool(getattr(model, "_is_graph_network", False))


def require_graph_model(model: Any, argument: str = "model") -> None:
    """Raise a clear error unless ``model`` is a built Sequential/Functional model."""
    if not is_graph_model(model):
        _validation.fail(
            argument,
            "a built Sequential or Functional model (TFMOT cannot wrap subclassed models)",
            type(model).__name__,
            hint="Build it with `keras.Input(...)` first, or rewrite it with the functional API",
            exc=TypeError,
        )


def has_nested_models(model: Any) -> bool:
    """True when any layer of ``model`` is itself a Keras model."""
    return any(isinstance(layer, keras.Model) for layer in model.layers)


def iter_layers(model: Any):
    """Yield every non-model layer of ``model``, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def _run(model: Any, inputs: list, replace: Replace, tensors: dict[int, Any]) -> list:
    for old, new in zip(model.inputs, inputs, strict=True):
        tensors[id(old)] = new

    def lookup(value: Any) -> Any:
        return tensors.get(id(value), value)

    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            layer = node.layer
            args = tf.nest.map_structure(lookup, node.call_args)
            kwargs = tf.nest.map_structure(lookup, node.call_kwargs)
            if is_graph_model(layer):
                flat = tf.nest.flatten((args, kwargs))
                flat = [t for t in flat if keras.backend.is_keras_tensor(t)]
                outputs: Any = _run(layer, flat, replace, tensors)
                if len(outputs) == 1:
                    outputs = outputs[0]
            else:
                new_layer = replace(layer)
                outputs = args[0] if new_layer is None else new_layer(*args, **kwargs)
            for old, new in zip(
                tf.nest.flatten(node.outputs), tf.nest.flatten(outputs), strict=True
            ):
                tensors[id(old)] = new
    return [tensors[id(t)] for t in model.outputs]


def rebuild(model: Any, replace: Replace, name: str | None = None) -> Any:
    """Return a new Functional model with every layer passed through ``replace``.

    Nested graph models are inlined; input layers are recreated.
    """
    require_graph_model(model)
    input_layers = getattr(model, "_input_layers", None) or [None] * len(model.inputs)
    inputs = [
        keras.Input(
            batch_shape=tuple(t.shape),
            dtype=t.dtype,
            name=None if layer is None else layer.name,
        )
        for t, layer in zip(model.inputs, input_layers, strict=True)
    ]
    outputs = _run(model, inputs, replace, {})
    return keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=name or model.name,
    )


def flatten_nested(model: Any) -> Any:
    """Return ``model`` with nested models inlined (the same layers, shared)."""
    if not has_nested_models(model):
        return model
    return rebuild(model, lambda layer: layer)


def clone_layer(layer: Any) -> Any:
    """A fresh copy of ``layer`` from its config (weights copied after build)."""
    return type(layer).from_config(layer.get_config())


def copy_layer(layer: Any) -> Any:
    """A fresh, built copy of ``layer`` holding a copy of its weights."""
    new = clone_layer(layer)
    if layer.weights:
        new.build(layer.input_shape)
        new.set_weights(layer.get_weights())
    return new


def copy_model(model: Any, wrap: Callable[[Any], Any], name: str | None = None) -> Any:
    """Copy ``model`` (nested models inlined) with ``wrap`` applied to each copied layer.

    The original model and its weights are left untouched.
    """
    return rebuild(model, lambda layer: wrap(copy_layer(layer)), name=name)
