"""Optimizer plumbing shared by keras_opt callbacks, for both Keras flavors.

`LRScheduler` drives the learning rate and momentum *in-graph*: for the
duration of ``fit`` it swaps the optimizer's LR for `ScheduledLearningRate`
(a ``LearningRateSchedule`` computing ``schedule(step + offset) * scale``
from the optimizer's own step counter) and its ``momentum``/``beta_1`` for a
`DynamicFloat`. No Python runs per batch — a per-batch ``Variable.assign``
costs 0.1–0.6 ms, which is more than many small train steps.

`DynamicFloat` is a ``float`` subclass: it compares like the original value
(so Keras' ``if self.momentum != 0`` keeps working) and serializes as a float,
but every arithmetic or tensor conversion evaluates a TensorFlow function, so
the traced train step computes the current value at each step.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from keras_opt._state import base_optimizer, read_float
from keras_opt.backend import is_tf_keras, keras

MOMENTUM_ATTRS = ("momentum", "beta_1")


def _may_share_reads(graph: Any) -> bool:
    """Whether one read of the momentum variable can serve every use in ``graph``.

    The optimizer uses ``beta_1`` / ``momentum`` twice per model variable; with one read per
    use, each use is a separate stateful op, ordered after the schedule's assign, and
    Grappler cannot merge the identical arithmetic built on them (tf_keras' Adam:
    ``pow(beta_1, step)`` per variable): a one-cycle LRScheduler cost ~0.1 ms per step on the
    digits CNN, most of it this. The value is the same for every use of a step (the schedule
    assigns it once, before the update). Not shared inside a control-dependency scope (the
    read would carry it to other uses) nor with several replicas (each reads its own copy).
    """
    if getattr(graph, "_control_dependencies_stack", None):
        return False
    return not tf.distribute.has_strategy() or (
        tf.distribute.get_strategy().num_replicas_in_sync == 1
    )


class DynamicFloat(float):
    """A float whose arithmetic and tensor conversion read a live value (see module doc).

    Inside the traced train step it reads ``variable`` — one op per traced graph,
    however many model variables the optimizer updates (see `_may_share_reads`) —
    which `ScheduledLearningRate` refreshes once per step. Read eagerly
    (``float(optimizer.beta_1)``), it evaluates ``fn()``, the value for the
    optimizer's next step.
    """

    fn: Callable[[], tf.Tensor]
    variable: Any

    def __new__(
        cls, value: float, fn: Callable[[], tf.Tensor], variable: Any = None
    ) -> DynamicFloat:
        obj = float.__new__(cls, value)
        obj.fn = fn
        obj.variable = variable
        return obj

    def _t(self) -> tf.Tensor:
        if self.variable is None or tf.executing_eagerly():
            return tf.convert_to_tensor(self.fn())
        graph = tf.compat.v1.get_default_graph()
        cached = getattr(self, "_read", None)
        if cached is not None and cached[0]() is graph:
            return cached[1]
        value = tf.convert_to_tensor(self.variable)
        if _may_share_reads(graph):
            self._read = (weakref.ref(graph), value)
        return value

    def __tf_tensor__(self, dtype: Any = None, name: Any = None) -> tf.Tensor:
        value = self._t()
        return tf.cast(value, dtype) if dtype is not None else value

    def __float__(self) -> float:
        try:
            return float(tf.convert_to_tensor(self.fn()).numpy())
        except (AttributeError, NotImplementedError, RuntimeError):  # inside a graph
            return float.__float__(self)

    def __repr__(self) -> str:
        return repr(float(self))

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
        return float(self)

    def __reduce__(self) -> tuple:
        return (float, (float(self),))

    __hash__ = float.__hash__


@keras.utils.register_keras_serializable(package="keras_opt")
class ScheduledLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule(step + offset) * scale``, installed by `LRScheduler` during fit.

    ``offset`` and ``scale`` are variables while training (the plateau rule
    and ``initial_epoch`` change them) and plain numbers once serialized, so a
    model checkpointed mid-training reloads with the schedule it was using.
    """

    def __init__(self, schedule: Any, offset: Any = 0, scale: Any = 1.0) -> None:
        super().__init__()
        self.schedule = schedule
        self.offset = offset
        self.scale = scale
        self.original: Any = None
        #: Variable refreshed with ``schedule.momentum(step)`` at each call (the
        #: optimizer calls its schedule once per step, before updating weights).
        self.momentum_variable: Any = None

    def __call__(self, step: Any) -> Any:
        step = tf.cast(step, tf.float32) + tf.cast(self.offset, tf.float32)
        lr = tf.cast(self.schedule(step), tf.float32) * tf.cast(self.scale, tf.float32)
        if self.momentum_variable is not None:
            self.momentum_variable.assign(tf.cast(self.schedule.momentum(step), tf.float32))
        return lr

    def get_config(self) -> dict[str, Any]:
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "offset": int(read_float(self.offset)),
            "scale": read_float(self.scale),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScheduledLearningRate:
        config = dict(config)
        config["schedule"] = keras.optimizers.schedules.deserialize(config["schedule"])
        return cls(**config)


def momentum_attribute(optimizer: Any) -> str | None:
    """Name of the optimizer's momentum-like hyper-parameter, or None.

    SGD, RMSprop: ``momentum`` (None when created with ``momentum=0``: Keras
    then builds no momentum state). Adam, AdamW, Nadam, Adamax, Lion:
    ``beta_1``.
    """
    optimizer = base_optimizer(optimizer)
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


def release_schedule(optimizer: Any) -> None:
    """Put back the LR variable that a `ScheduledLearningRate` still wraps.

    `LRScheduler` installs the wrapper for one ``fit`` and removes it at
    ``on_train_end``; a ``fit`` that raised first leaves it behind. Callers
    that set the LR themselves call this before `learning_rate_variable`.
    """
    optimizer = base_optimizer(optimizer)
    lr = getattr(optimizer, "_learning_rate", None)
    if isinstance(lr, ScheduledLearningRate) and lr.original is not None:
        optimizer._learning_rate = lr.original


def learning_rate_variable(optimizer: Any, owner: str) -> Any:
    """The optimizer's LR variable (read only); a clear TypeError if it holds a schedule."""
    optimizer = base_optimizer(optimizer)
    lr = getattr(optimizer, "_learning_rate", None)
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


def build_optimizer(model: Any) -> None:
    """Build the optimizer's state now (tf_keras builds it at the first step)."""
    optimizer = model.optimizer
    built = getattr(optimizer, "built", None)
    if built is None:
        built = getattr(optimizer, "_built", False)
    if not built:
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def install_schedule(model: Any, wrapper: ScheduledLearningRate) -> None:
    """Swap the optimizer's LR variable for ``wrapper`` (in-graph) until `uninstall`."""
    optimizer = base_optimizer(model.optimizer)
    wrapper.original = learning_rate_variable(optimizer, "LRScheduler")
    optimizer._learning_rate = wrapper
    if is_tf_keras() and not hasattr(optimizer, "_current_learning_rate"):
        # tf_keras keeps the current value of a schedule in this variable and
        # would otherwise create it inside the traced step.
        with model.distribute_strategy.scope():
            optimizer._current_learning_rate = tf.Variable(
                read_float(wrapper(optimizer.iterations)),
                name="current_learning_rate",
                dtype=tf.float32,
                trainable=False,
            )


def install_momentum(
    model: Any, attr: str, wrapper: ScheduledLearningRate, fn: Callable[[], tf.Tensor]
) -> float:
    """Make ``optimizer.<attr>`` follow the schedule's momentum; returns the original value.

    ``wrapper`` (installed as the LR) computes the momentum once per step into
    a variable that the optimizer's update reads; ``fn`` gives it eagerly.
    """
    optimizer = base_optimizer(model.optimizer)
    current = getattr(optimizer, attr)
    original = float.__float__(current) if isinstance(current, DynamicFloat) else float(current)
    with model.distribute_strategy.scope():
        wrapper.momentum_variable = tf.Variable(
            original,
            trainable=False,
            dtype=tf.float32,
            name=f"keras_opt_{attr}",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
    wrapper.momentum_variable.assign(fn())
    setattr(optimizer, attr, DynamicFloat(original, fn, wrapper.momentum_variable))
    return original


def uninstall(model: Any, momentum_attr: str | None) -> None:
    """Put plain values back: the LR variable (holding the last LR) and a float momentum."""
    optimizer = base_optimizer(model.optimizer)
    wrapper = optimizer._learning_rate
    if isinstance(wrapper, ScheduledLearningRate) and wrapper.original is not None:
        last = read_float(wrapper(optimizer.iterations - 1))
        optimizer._learning_rate = wrapper.original
        optimizer._learning_rate.assign(last)
    if momentum_attr:
        current = getattr(optimizer, momentum_attr, None)
        if isinstance(current, DynamicFloat):
            setattr(optimizer, momentum_attr, float(current))
    retrace(model)


def retrace(model: Any) -> None:
    """Make the next ``fit`` step re-trace, so it sees swapped optimizer attributes."""
    model.make_train_function(force=True)
