"""Snapshot and restore a model's weights and optimizer state around measurements.

The batch-size finder, the input-pipeline check and the profiler run real
training steps; they put the model back as it was afterwards. Optimizer slots
created by those steps (the optimizer was not built yet) are zeroed, which is
exactly the state of a freshly built optimizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _optimizer_variables(model: Any) -> list[Any]:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return []
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


class ModelState:
    """Weights and optimizer variables of ``model`` at construction time."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.weights = [np.array(w) for w in model.get_weights()]
        self.optimizer = {id(var): np.array(var.numpy()) for var in _optimizer_variables(model)}

    def restore(self) -> None:
        """Put the weights and optimizer variables back."""
        self.model.set_weights(self.weights)
        for var in _optimizer_variables(self.model):
            saved = self.optimizer.get(id(var))
            var.assign(saved if saved is not None else np.zeros_like(var.numpy()))


def unpack_batch(batch: Any) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` from a dataset element (tuple of 1-3, or plain x)."""
    if isinstance(batch, (tuple, list)):
        items = list(batch) + [None] * (3 - len(batch))
        return items[0], items[1], items[2]
    return batch, None, None


def batch_length(x: Any) -> int:
    """Number of samples in a (possibly nested) batch of inputs."""
    import tensorflow as tf

    first = tf.nest.flatten(x)[0]
    return int(first.shape[0])
