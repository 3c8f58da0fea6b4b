"""Rebuild a Functional/Sequential graph layer by layer.

Under tf_keras, TFMOT's own ``clone_model`` based helpers stop at nested
models (TFMOT #957) and there is no way to drop a layer from a graph with
them: `rebuild` walks the graph node by node, inlines nested graph models, and
lets a callback replace each layer, or drop it (identity), which is how QAT
wrappers are removed. Under Keras 3, ``keras.models.clone_model`` does this
itself (``recursive=True`` keeps nested models; a dropped layer becomes
``keras.layers.Identity``), so `rebuild` is a thin layer over it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from keras_opt import _validation, backend
from keras_opt.backend import keras

Replace = Callable[[Any], Any]
"""Maps an old layer to a new layer, or to None to pass its input through."""


def is_graph_model(model: Any) -> bool:
    """True for Sequential and Functional models (not subclassed ones)."""
    if not isinstance(model, keras.Model):
        return False
    if backend.is_tf_keras():
        return bool(getattr(model, "_is_graph_network", False))
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None) is not None
    return hasattr(model, "_nodes_by_depth") and hasattr(model, "_run_through_graph")


def require_graph_model(model: Any, argument: str = "model") -> None:
    """Raise a clear error unless ``model`` is a built Sequential/Functional model."""
    if not is_graph_model(model):
        _validation.fail(
            argument,
            "a built Sequential or Functional model (the layers of a subclassed model "
            "cannot be rebuilt with compressed ones)",
            type(model).__name__,
            hint="Build it with `keras.Input(...)` first. A subclassed model's layers cannot "
            "be rebuilt: write the same network with the functional API or keras.Sequential, "
            "copy the weights into it (set_weights) and compress that model",
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

    Under tf_keras nested graph models are inlined and input layers recreated;
    under Keras 3 it is ``keras.models.clone_model(recursive=True)``, which keeps
    nested models and the Sequential/Functional class.
    """
    require_graph_model(model)
    if not backend.is_tf_keras():
        return _clone_keras3(model, replace)
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


def _clone_keras3(model: Any, replace: Replace) -> Any:
    def clone_function(layer: Any) -> Any:
        new = replace(layer)
        return keras.layers.Identity(name=layer.name) if new is None else new

    return keras.models.clone_model(model, clone_function=clone_function, recursive=True)


def flatten_nested(model: Any) -> Any:
    """Return ``model`` with nested models inlined (tf_keras; Keras 3 keeps them)."""
    if not has_nested_models(model) or not backend.is_tf_keras():
        return model
    return rebuild(model, lambda layer: layer)


def clone_layer(layer: Any) -> Any:
    """A fresh copy of ``layer`` from its config (weights copied after build)."""
    return type(layer).from_config(layer.get_config())


def copy_layer(layer: Any) -> Any:
    """A fresh, built copy of ``layer`` holding a copy of its weights."""
    new = clone_layer(layer)
    if layer.weights:
        if backend.is_tf_keras():
            new.build(layer.input_shape)
        else:
            new.build_from_config(layer.get_build_config())
        new.set_weights(layer.get_weights())
    return new


def copy_model(model: Any, wrap: Callable[[Any], Any], name: str | None = None) -> Any:
    """Copy ``model`` (nested models inlined) with ``wrap`` applied to each copied layer.

    The original model and its weights are left untouched.
    """
    return rebuild(model, lambda layer: wrap(copy_layer(layer)), name=name)
