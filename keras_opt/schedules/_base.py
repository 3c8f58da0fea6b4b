"""Shared machinery of keras_opt's learning-rate schedules.

Every schedule writes its formula once, against a tiny math namespace, and gets
two evaluations from it:

* ``schedule(step)`` — in-graph (TensorFlow ops), so the schedule can be passed
  to an optimizer as ``learning_rate=`` with no per-step Python;
* ``schedule.lr_at(step)`` — a Python float (NumPy), used by the
  `keras_opt.callbacks.LRScheduler` callback and by tests.

Lengths can be given in steps or in epochs. A schedule given in epochs needs
``steps_per_epoch``; the callback fills it in from ``fit``'s params, and
`Schedule.resolve` does it by hand.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt import _validation as v
from keras_opt.backend import keras


class _NumpyMath:
    pi = math.pi

    @staticmethod
    def f(x: Any) -> Any:
        return np.asarray(x, dtype=np.float64)

    cos = staticmethod(np.cos)
    floor = staticmethod(np.floor)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    where = staticmethod(np.where)
    power = staticmethod(np.power)
    log = staticmethod(np.log)
    abs = staticmethod(np.abs)

    @staticmethod
    def clip(x: Any, lo: Any, hi: Any) -> Any:
        return np.clip(x, lo, hi)


class _TFMath:
    pi = math.pi

    @staticmethod
    def f(x: Any) -> Any:
        return tf.cast(x, tf.float32)

    cos = staticmethod(tf.cos)
    floor = staticmethod(tf.floor)
    minimum = staticmethod(tf.minimum)
    maximum = staticmethod(tf.maximum)
    where = staticmethod(tf.where)
    power = staticmethod(tf.pow)
    log = staticmethod(tf.math.log)
    abs = staticmethod(tf.abs)

    @staticmethod
    def clip(x: Any, lo: Any, hi: Any) -> Any:
        return tf.clip_by_value(x, lo, hi)


NP = _NumpyMath()
TF = _TFMath()


def length_in_steps(
    owner: str,
    steps_name: str,
    steps: int | None,
    epochs_name: str,
    epochs: float | None,
    steps_per_epoch: int | None,
) -> int | None:
    """Return a length in steps from a steps or an epochs argument (or None)."""
    if steps is not None:
        return int(steps)
    if epochs is None:
        return None
    if steps_per_epoch is None:
        raise ValueError(
            f"{owner} was given `{epochs_name}={epochs}` but no `steps_per_epoch`, so its "
            f"length in steps is unknown. Pass `steps_per_epoch=` (or `{steps_name}=`), or "
            "use it through `keras_opt.callbacks.LRScheduler`, which reads steps_per_epoch "
            "from `fit`."
        )
    return max(1, int(round(epochs * steps_per_epoch)))


def check_steps_or_epochs(
    steps_name: str, steps: Any, epochs_name: str, epochs: Any, *, required: bool = False
) -> None:
    """Validate a (steps, epochs) pair: at most one given, positive."""
    if steps is not None and epochs is not None:
        raise ValueError(
            f"Pass only one of `{steps_name}` and `{epochs_name}`. "
            f"Received: {steps_name}={steps!r}, {epochs_name}={epochs!r}"
        )
    if steps is not None:
        v.integer(steps_name, steps, minimum=1)
    if epochs is not None:
        v.positive(epochs_name, epochs)
    if required and steps is None and epochs is None:
        raise ValueError(f"Pass one of `{steps_name}` or `{epochs_name}`. Received neither.")


class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """Base class of keras_opt schedules (a Keras ``LearningRateSchedule``).

    Subclasses implement ``_formula(step, m)`` where ``m`` is a math namespace
    (NumPy or TensorFlow) and optionally ``_momentum_formula``. Constructor
    arguments are stored in ``self._config`` so that ``get_config``,
    ``from_config`` and ``copy.deepcopy`` work for every subclass.

    Example:
        >>> from keras_opt.schedules import OneCycle
        >>> s = OneCycle(max_lr=0.01, total_steps=100)
        >>> round(s.lr_at(25), 6)
        0.01
    """

    #: Whether a total length is required (False for schedules such as SGDR
    #: and cyclical LR that run forever).
    needs_total = True

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self._config = dict(config)

    # ----- length handling ---------------------------------------------------
    @property
    def steps_per_epoch(self) -> int | None:
        """Integer or None. Steps per epoch used to turn epochs into steps."""
        return self._config.get("steps_per_epoch")

    def _epoch_fields(self) -> list[tuple[str, str]]:
        """(steps_name, epochs_name) pairs of the lengths this schedule has."""
        return [("total_steps", "epochs")]

    def is_resolved(self) -> bool:
        """Return True when every length can be expressed in steps.

        Returns:
            Boolean.
        """
        for steps_name, epochs_name in self._epoch_fields():
            if (
                self._config.get(steps_name) is None
                and self._config.get(epochs_name) is not None
                and self.steps_per_epoch is None
            ):
                return False
        return not (self.needs_total and self._total_steps_or_none() is None)

    def _total_steps_or_none(self) -> int | None:
        c = self._config
        if c.get("total_steps") is not None:
            return int(c["total_steps"])
        if c.get("epochs") is not None and self.steps_per_epoch is not None:
            return length_in_steps(
                type(self).__name__,
                "total_steps",
                None,
                "epochs",
                c["epochs"],
                self.steps_per_epoch,
            )
        return None

    def resolve(self, steps_per_epoch: int | None = None, epochs: int | None = None) -> Schedule:
        """Return a copy with ``steps_per_epoch`` (and a missing length) filled in.

        Args:
            steps_per_epoch: Integer or None. Batches per epoch, e.g. fit's
                ``params["steps"]``. Kept when the schedule already has one.
            epochs: Integer or None. Used as the schedule's length in epochs when
                the schedule was created without any length.

        Returns:
            A new schedule of the same class.

        Example:
            >>> from keras_opt.schedules import WarmupDecay
            >>> s = WarmupDecay(peak_lr=0.1, epochs=10, warmup_epochs=1)
            >>> s.resolve(steps_per_epoch=50).total_steps
            500
        """
        config = self.get_config()
        if steps_per_epoch is not None:
            v.integer("steps_per_epoch", steps_per_epoch, minimum=1)
            if config.get("steps_per_epoch") is None:
                config["steps_per_epoch"] = int(steps_per_epoch)
        if (
            self.needs_total
            and epochs is not None
            and config.get("total_steps") is None
            and config.get("epochs") is None
        ):
            config["epochs"] = epochs
        return type(self).from_config(config)

    @property
    def total_steps(self) -> int:
        """Integer. Length of the schedule in optimizer steps."""
        total = self._total_steps_or_none()
        if total is None:
            raise ValueError(
                f"{type(self).__name__} has no known length. Pass `total_steps=` or `epochs=` "
                "(with `steps_per_epoch=`), or use it through "
                "`keras_opt.callbacks.LRScheduler`, which takes the length from `fit`."
            )
        return total

    def _steps(self, steps_name: str, epochs_name: str) -> int | None:
        return length_in_steps(
            type(self).__name__,
            steps_name,
            self._config.get(steps_name),
            epochs_name,
            self._config.get(epochs_name),
            self.steps_per_epoch,
        )

    # ----- evaluation -----------------------------------------------------------
    def _formula(self, step: Any, m: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _momentum_formula(self, step: Any, m: Any) -> Any:
        return None

    def _check(self) -> None:
        """Validate relations that need resolved lengths (e.g. warmup < total)."""

    def __call__(self, step: Any) -> Any:
        """In-graph learning rate at optimizer step ``step`` (a float32 tensor)."""
        self._check()
        with tf.name_scope(type(self).__name__):
            return self._formula(TF.f(step), TF)

    def lr_at(self, step: int | float) -> float:
        """Learning rate at ``step`` as a Python float.

        Args:
            step: Integer. Optimizer step (0-based).

        Returns:
            Float.

        Example:
            >>> from keras_opt.schedules import WarmupDecay
            >>> WarmupDecay(peak_lr=0.1, total_steps=100, warmup_steps=10).lr_at(5)
            0.05
        """
        self._check()
        return float(self._formula(NP.f(step), NP))

    def momentum(self, step: Any) -> Any:
        """In-graph momentum at ``step`` (a float32 tensor), or None if not cycled.

        Args:
            step: Integer tensor or number. Optimizer step.

        Returns:
            A float32 tensor, or None.
        """
        self._check()
        return self._momentum_formula(TF.f(step), TF)

    def momentum_at(self, step: int | float) -> float | None:
        """Momentum (or Adam's ``beta_1``) at ``step``, or None if not cycled.

        Args:
            step: Integer. Optimizer step (0-based).

        Returns:
            Float, or None when this schedule does not define momentum.
        """
        self._check()
        value = self._momentum_formula(NP.f(step), NP)
        return None if value is None else float(value)

    @property
    def cycles_momentum(self) -> bool:
        """Boolean. Whether this schedule defines a momentum cycle."""
        return False

    # ----- serialization ---------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-serializable).

        Returns:
            Dict.
        """
        return copy.deepcopy(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Schedule:
        """Rebuild a schedule from `get_config` output.

        Args:
            config: Dict.

        Returns:
            A schedule.
        """
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items() if v is not None)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(sorted(self._config.items()))))


def cosine_anneal(start: Any, end: Any, pct: Any, m: Any) -> Any:
    """Cosine interpolation from ``start`` (pct=0) to ``end`` (pct=1)."""
    return end + (start - end) * 0.5 * (1.0 + m.cos(m.pi * pct))


def linear_anneal(start: Any, end: Any, pct: Any, m: Any) -> Any:
    """Linear interpolation from ``start`` (pct=0) to ``end`` (pct=1)."""
    return start + (end - start) * pct


def check_momentum_pair(base_momentum: Any, max_momentum: Any) -> None:
    """Validate a (base, max) momentum pair: both in [0, 1), base <= max."""
    v.in_range("base_momentum", base_momentum, 0.0, 1.0, high_inclusive=False)
    v.in_range("max_momentum", max_momentum, 0.0, 1.0, high_inclusive=False)
    if base_momentum > max_momentum:
        v.fail("max_momentum", f">= base_momentum={base_momentum}", max_momentum)
