"""Model and optimizer state on the host: read a variable, snapshot it, put it back.

The one place keras_opt copies state to NumPy and restores it, in both Keras
flavors:

* `read_value` / `read_float`: a NumPy copy (a Python float) of a variable,
  tensor, array or number.
* `VariableSnapshot`: the values of a fixed list of variables (e.g. the
  BatchNorm statistics and metric accumulators a probe forward pass moves).
* `ModelSnapshot`: a model's weights, its optimizer's variables and its
  learning rate, restored bit for bit. The LR finder, NaNGuard's diagnosis,
  the batch-size finder, the input-pipeline check and the profiler use it
  around the training steps they run.

NaNGuard's per-step snapshot is another matter: it lives on the device, in
the graph (`keras_opt.callbacks._guard_step`).

Example:
    >>> from keras_opt.backend import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    >>> snap = ModelSnapshot.take(model)
    >>> _ = model.optimizer.learning_rate.assign(0.5)
    >>> _ = model.layers[0].kernel.assign([[1.0], [2.0]])
    >>> snap.restore()
    >>> round(read_float(model.optimizer.learning_rate), 6)
    0.1
    >>> bool((model.get_weights()[0] == snap.weights[0]).all())
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np


def read_value(value: Any) -> np.ndarray:
    """NumPy copy of a Keras 3 or TF variable, a tensor, an array or a number.

    Example:
        >>> read_value(3.0)
        array(3.)
    """
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.array(value, copy=True)


def read_float(value: Any) -> float:
    """Python float from a variable, tensor or number.

    Example:
        >>> read_float(np.float32(0.5))
        0.5
    """
    if type(value) is float or type(value) is int:  # Keras 3's batch logs: no copy needed
        return float(value)
    return float(read_value(value))


def unique(variables: Iterable[Any]) -> list[Any]:
    """``variables`` in order, each object once (by identity)."""
    seen: set[int] = set()
    out = []
    for var in variables:
        if id(var) not in seen:
            seen.add(id(var))
            out.append(var)
    return out


def base_optimizer(optimizer: Any) -> Any:
    """The optimizer that holds the hyper-parameters (unwraps LossScaleOptimizer)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def optimizer_variables(optimizer: Any) -> list[Any]:
    """The optimizer's variables and its learning-rate variable (not a schedule), once each.

    Keras 3 lists the LR among ``optimizer.variables``; tf_keras does not.
    """
    if optimizer is None:
        return []
    variables = optimizer.variables
    found = list(variables() if callable(variables) else variables)
    lr = getattr(base_optimizer(optimizer), "_learning_rate", None)
    if hasattr(lr, "assign") and hasattr(lr, "numpy"):
        found.append(lr)
    return unique(found)


@dataclasses.dataclass(frozen=True)
class VariableSnapshot:
    """The values of ``variables`` when taken; `restore` assigns them back.

    Attributes:
        variables: Tuple of variables.
        values: Tuple of NumPy arrays, one per variable.

    Example:
        >>> import tensorflow as tf
        >>> var = tf.Variable([1.0, 2.0])
        >>> snap = VariableSnapshot.take([var])
        >>> _ = var.assign([0.0, 0.0])
        >>> snap.restore(); var.numpy().tolist()
        [1.0, 2.0]
    """

    variables: tuple[Any, ...]
    values: tuple[np.ndarray, ...]

    @classmethod
    def take(cls, variables: Iterable[Any]) -> VariableSnapshot:
        """Copy the current values of ``variables`` (each one once)."""
        found = tuple(unique(variables))
        return cls(found, tuple(read_value(var) for var in found))

    def restore(self) -> None:
        """Assign the saved values back."""
        for var, value in zip(self.variables, self.values, strict=True):
            var.assign(value)

    def holds(self, variable: Any) -> bool:
        """Whether ``variable`` (by identity) is in the snapshot."""
        return any(var is variable for var in self.variables)


@dataclasses.dataclass(frozen=True)
class ModelSnapshot:
    """A model's weights, optimizer variables and learning rate, for an exact restore.

    `restore` puts back, bit for bit, every weight and every optimizer
    variable that existed at `take` (the LR included), and zeroes optimizer
    variables created since (slots of an optimizer that was not built yet):
    that is a freshly built optimizer's state. Keras' running metrics are
    reset. Taking a snapshot changes nothing, not even an unbuilt optimizer.

    Attributes:
        model: The Keras model.
        weights: Tuple of NumPy arrays, as ``model.get_weights()``.
        optimizer: `VariableSnapshot` of the optimizer's variables and LR.
    """

    model: Any
    weights: tuple[np.ndarray, ...]
    optimizer: VariableSnapshot

    @classmethod
    def take(cls, model: Any) -> ModelSnapshot:
        """Copy ``model``'s weights and its optimizer's state now."""
        weights = tuple(np.array(w, copy=True) for w in model.get_weights())
        optimizer = getattr(model, "optimizer", None)
        return cls(model, weights, VariableSnapshot.take(optimizer_variables(optimizer)))

    def restore(self) -> None:
        """Put back the weights and optimizer state of `take`; reset the metrics."""
        model = self.model
        model.set_weights(list(self.weights))
        self.optimizer.restore()
        for var in optimizer_variables(getattr(model, "optimizer", None)):
            if not self.optimizer.holds(var):
                var.assign(np.zeros_like(read_value(var)))
        if hasattr(model, "reset_metrics"):
            model.reset_metrics()
