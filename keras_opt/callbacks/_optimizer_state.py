"""Reading and writing optimizer hyper-parameters from callbacks, in both flavors.

Keras optimizers keep ``momentum`` (SGD, RMSprop) and ``beta_1`` (Adam family)
as Python floats that are baked into the traced train step. To change them per
batch we replace the float with `_VariableFloat`: a ``float`` subclass that
compares like the original value (so ``if self.momentum != 0`` keeps working),
serializes as a float in ``get_config``, and reads a ``tf.Variable`` in every
arithmetic or tensor conversion, so the traced step sees each new value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt.backend import keras

MOMENTUM_ATTRS = ("momentum", "beta_1")
_HOLDERS = "_keras_opt_hyper_variables"


class _VariableFloat(float):
    """A float whose arithmetic reads a ``tf.Variable`` (see module docstring)."""

    variable: tf.Variable

    def __new__(cls, variable: tf.Variable) -> _VariableFloat:
        obj = float.__new__(cls, float(variable.numpy()))
        obj.variable = variable
        return obj

    def __tf_tensor__(self, dtype: Any = None, name: Any = None) -> tf.Tensor:
        value = tf.convert_to_tensor(self.variable)
        return tf.cast(value, dtype) if dtype is not None else value

    def _t(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.variable)

    def __add__(self, o: Any) -> Any:
        return self._t() + o

    def __radd__(self, o: Any) -> Any:
        return o + self._t()

    def __sub__(self, o: Any) -> Any:
        return self._t() - o

    def __rsub__(self, o: Any) -> Any:
        return o - self._t()

    def __mul__(self, o: Any) -> Any:
        return self._t() * o

    def __rmul__(self, o: Any) -> Any:
        return o * self._t()

    def __truediv__(self, o: Any) -> Any:
        return self._t() / o

    def __rtruediv__(self, o: Any) -> Any:
        return o / self._t()

    def __pow__(self, o: Any) -> Any:  # type: ignore[override]
        return self._t() ** o

    def __rpow__(self, o: Any) -> Any:  # type: ignore[override]
        return o ** self._t()

    def __neg__(self) -> Any:
        return -self._t()

    def __deepcopy__(self, memo: dict) -> float:
        return float(self.variable.numpy())

    def __reduce__(self) -> tuple:
        return (float, (float(self.variable.numpy()),))

    __hash__ = float.__hash__


def momentum_attribute(optimizer: Any) -> str | None:
    """Name of the optimizer's momentum-like hyper-parameter, or None.

    SGD, RMSprop: ``momentum`` (None when created with ``momentum=0``: Keras
    then builds no momentum slots). Adam, AdamW, Nadam, Adamax, Lion:
    ``beta_1``.
    """
    for attr in MOMENTUM_ATTRS:
        value = getattr(optimizer, attr, None)
        if value is None or isinstance(value, bool) or callable(value):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if attr == "momentum" and number == 0.0:
            return None
        return attr
    return None


def variable_hyperparameter(model: Any, attr: str) -> tf.Variable:
    """Make ``model.optimizer.<attr>`` a variable-backed float and return the variable.

    The variable is created once per optimizer and reused across ``fit``
    calls. When the attribute was a plain float, the train function is
    re-traced so that it reads the variable.
    """
    optimizer = model.optimizer
    holders = optimizer.__dict__.setdefault(_HOLDERS, {})
    current = getattr(optimizer, attr)
    if attr not in holders:
        with model.distribute_strategy.scope():
            holders[attr] = tf.Variable(
                float(current), trainable=False, dtype=tf.float32, name=f"keras_opt_{attr}"
            )
    variable = holders[attr]
    if not (isinstance(current, _VariableFloat) and current.variable is variable):
        variable.assign(float(current))
        setattr(optimizer, attr, _VariableFloat(variable))
        model.make_train_function(force=True)
    return variable


def restore_hyperparameter(model: Any, attr: str) -> None:
    """Put a plain float back (so that the optimizer's config saves cleanly)."""
    optimizer = model.optimizer
    current = getattr(optimizer, attr, None)
    if isinstance(current, _VariableFloat):
        setattr(optimizer, attr, float(current.variable.numpy()))


def learning_rate_variable(optimizer: Any, owner: str) -> Any:
    """The optimizer's LR variable; a clear TypeError if it holds a schedule."""
    lr = optimizer._learning_rate if hasattr(optimizer, "_learning_rate") else None
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule) or callable(lr):
        raise TypeError(
            f"{owner} sets the learning rate itself, but the optimizer "
            f"{type(optimizer).__name__} was created with a schedule object "
            f"({type(lr).__name__}). Either create the optimizer with a float learning rate "
            f"(e.g. `{type(optimizer).__name__}(learning_rate=1e-3)`) and pass the schedule to "
            f"{owner}, or drop {owner} and keep the in-graph schedule."
        )
    if lr is None or not hasattr(lr, "assign"):
        raise TypeError(
            f"{owner} cannot find a settable learning rate on optimizer "
            f"{type(optimizer).__name__}. Use a Keras optimizer created with a float "
            "`learning_rate`."
        )
    return lr


def read_float(value: Any) -> float:
    """Python float from a variable, tensor or number."""
    if hasattr(value, "numpy"):
        return float(np.asarray(value.numpy()))
    return float(np.asarray(value))
