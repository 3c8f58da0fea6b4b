"""Shared trained models for the compression tests (built once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_opt import backend
from tests.conftest import build_residual_cnn, compile_classifier


def accuracy(model, x, y) -> float:
    """Top-1 accuracy of a Keras model."""
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == y))


def tflite_accuracy(model, x, y) -> float:
    """Convert with Optimize.DEFAULT and measure top-1 accuracy with the LiteRT interpreter."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    hits = 0
    for image, label in zip(x, y, strict=True):
        interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out["index"])) == label)
    return hits / len(y)


def wrapper_of(model, name):
    """The compression wrapper around the layer called ``name`` (either engine's naming)."""
    from keras_opt.optimization import _engine, _graph

    for layer in _graph.iter_layers(model):
        if _engine.wrapper_kind(layer) and _engine.unwrap(layer).name == name:
            return layer
    raise KeyError(name)


def pruning_steps(wrapper):
    """The resolved `Steps` of a pruning wrapper (None before the fit resolves them)."""
    if backend.is_tf_keras():
        return wrapper.pruning_schedule.steps
    return wrapper.steps


def pruning_mask(wrapper):
    """The kernel mask of a pruning wrapper, as numpy."""
    if backend.is_tf_keras():
        return np.asarray(wrapper.pruning_vars[0][1].numpy())
    return np.asarray(wrapper.masks["kernel"].numpy())


@pytest.fixture(scope="session")
def trained_residual(digits):
    """The conftest residual CNN trained on digits (about 97% test accuracy)."""
    x, y, _, _ = digits
    model = compile_classifier(build_residual_cnn())
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model
