"""`LRScheduler`: drive the LR (and momentum) from a schedule, with plateau scaling."""

from __future__ import annotations

import logging
from typing import Any

import tensorflow as tf

from keras_opt import _validation as v
from keras_opt._state import base_optimizer, read_float
from keras_opt.backend import keras
from keras_opt.callbacks._base import Callback
from keras_opt.callbacks._monitor import MonitorState
from keras_opt.callbacks._optimizer_state import (
    ScheduledLearningRate,
    install_momentum,
    install_schedule,
    learning_rate_variable,
    momentum_attribute,
    release_schedule,
    retrace,
    uninstall,
)
from keras_opt.schedules import Schedule

logger = logging.getLogger(__name__)

__all__ = ["Plateau", "LRScheduler"]


class Plateau:
    """A plateau rule that *scales* a schedule instead of fighting it.

    When ``monitor`` has not improved for ``patience`` epochs, the scheduler
    multiplies every later LR by ``factor`` (cumulatively), never going below
    ``min_scale``. Keras' ``ReduceLROnPlateau`` cannot be combined with a
    schedule (it raises ``TypeError``); this rule can.

    Args:
        monitor: String. Metric to watch, e.g. ``"val_loss"``.
        factor: Float in (0, 1). Scale applied on each plateau.
        patience: Integer >= 1. Epochs without improvement before scaling.
        mode: String. ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: Float >= 0. Smallest change that counts as improvement.
        cooldown: Integer >= 0. Epochs to wait after a scaling.
        min_scale: Float in (0, 1]. Lower bound of the cumulative scale.

    Returns:
        A rule to pass as ``LRScheduler(..., plateau=...)``.

    Example:
        >>> from keras_opt.callbacks import LRScheduler, Plateau
        >>> from keras_opt.schedules import CosineRestarts
        >>> cb = LRScheduler(CosineRestarts(0.01, first_period_epochs=2),
        ...                  plateau=Plateau("val_loss", factor=0.5, patience=2))
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.5,
        patience: int = 2,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_scale: float = 1e-3,
    ) -> None:
        v.in_range("factor", factor, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        v.integer("patience", patience, minimum=1)
        v.integer("cooldown", cooldown, minimum=0)
        v.in_range("min_scale", min_scale, 0.0, 1.0, low_inclusive=False)
        self.state = MonitorState(monitor, mode, min_delta)
        self.factor = float(factor)
        self.patience = int(patience)
        self.cooldown = int(cooldown)
        self.min_scale = float(min_scale)
        self.reset()

    def reset(self) -> None:
        """Forget waits and the best value (the scale is kept by the scheduler)."""
        self.state.reset()
        self.wait = 0
        self.cooldown_left = 0

    def step(self, logs: dict[str, Any] | None, scale: float) -> float:
        """Update with one epoch's logs and return the (possibly lower) scale."""
        improved = self.state.update(logs)
        if improved is None:
            return scale
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if improved:
            self.wait = 0
            return scale
        self.wait += 1
        if self.wait >= self.patience and scale > self.min_scale:
            new = max(scale * self.factor, self.min_scale)
            logger.info(
                "Plateau on %s for %d epochs: LR scale %.4g -> %.4g",
                self.state.monitor,
                self.wait,
                scale,
                new,
            )
            self.wait = 0
            self.cooldown_left = self.cooldown
            return new
        return scale

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments.

        Returns:
            Dict.
        """
        return {
            "monitor": self.state.monitor,
            "factor": self.factor,
            "patience": self.patience,
            "mode": self.state.mode,
            "min_delta": self.state.min_delta,
            "cooldown": self.cooldown,
            "min_scale": self.min_scale,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Plateau:
        """Rebuild from `get_config`.

        Args:
            config: Dict.

        Returns:
            A `Plateau`.
        """
        return cls(**config)


class LRScheduler(Callback):
    """Drive the optimizer's LR (and momentum) from a schedule, in-graph, during fit.

    Compared with Keras' ``LearningRateScheduler`` (per epoch, LR only, Python):

    * per-step schedules whose length may be given in epochs — ``steps_per_epoch``
      and, if missing, the number of epochs are read from ``fit``;
    * computed in the train step from the optimizer's step counter: no Python
      per batch, so it costs nothing measurable (``benchmarks/``);
    * momentum (``momentum`` or ``beta_1``) cycled in opposite phase for
      schedules that define it (`keras_opt.schedules.OneCycle`, `CyclicalLR`);
    * the LR (and momentum) of the epoch's last step written into the epoch
      ``logs`` under ``log_key``, so ``History``, ``CSVLogger`` and
      ``TensorBoard`` record it — place ``LRScheduler`` before them;
    * an optional `Plateau` rule that scales the schedule (Keras'
      ``ReduceLROnPlateau`` raises ``TypeError`` next to a schedule);
    * resume: a second ``fit`` or ``fit(initial_epoch=k)`` continues from
      ``optimizer.iterations``. If the optimizer is fresh (``iterations == 0``)
      and ``initial_epoch = k > 0``, the schedule starts at ``k * steps_per_epoch``.

    During ``fit`` the optimizer's ``learning_rate`` is a schedule object; at
    the end it is a float variable again, holding the last LR, and momentum a
    float again, so the optimizer saves as usual.

    Args:
        schedule: A `keras_opt.schedules.Schedule` or any Keras
            ``LearningRateSchedule`` (evaluated in-graph).
        cycle_momentum: ``"auto"``, True or False. ``"auto"`` cycles momentum
            when the schedule defines it and the optimizer has ``momentum``
            (non-zero) or ``beta_1``. True raises if that is impossible.
        plateau: `Plateau` or None.
        log_key: String or None. Key for the LR in epoch logs (``"learning_rate"``,
            as Keras 3 uses); None disables logging.
        verbose: Integer. 1 logs the LR at INFO level once per epoch.

    Returns:
        A Keras callback of the flavor in use.

    Raises:
        TypeError: at train begin, if the optimizer already holds a schedule object.
        ValueError: if momentum cycling was requested on an optimizer without
            momentum or ``beta_1``.

    Example:
        >>> from keras_opt.callbacks import LRScheduler
        >>> from keras_opt.schedules import OneCycle
        >>> cb = LRScheduler(OneCycle(max_lr=1e-2))  # length taken from fit
        >>> # model.fit(x, y, epochs=5, callbacks=[cb])
    """

    def __init__(
        self,
        schedule: Schedule | keras.optimizers.schedules.LearningRateSchedule,
        cycle_momentum: bool | str = "auto",
        plateau: Plateau | None = None,
        log_key: str | None = "learning_rate",
        verbose: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            v.fail(
                "schedule",
                "a keras_opt schedule or a Keras LearningRateSchedule (evaluated in-graph)",
                schedule,
                exc=TypeError,
            )
        if cycle_momentum not in ("auto", True, False):
            v.fail("cycle_momentum", "'auto', True or False", cycle_momentum)
        if plateau is not None and not isinstance(plateau, Plateau):
            v.fail("plateau", "a keras_opt.callbacks.Plateau or None", plateau, exc=TypeError)
        if log_key is not None and not isinstance(log_key, str):
            v.fail("log_key", "a string or None", log_key, exc=TypeError)
        v.integer("verbose", verbose, minimum=0)
        self.schedule = schedule
        self.cycle_momentum = cycle_momentum
        self.plateau = plateau
        self.log_key = log_key
        self.verbose = verbose
        self.scale = 1.0
        self._reset_state()

    def _reset_state(self) -> None:
        self._active: Any = None
        self._offset: Any = None
        self._scale: Any = None
        self._momentum_attr_name: str | None = None

    # ----- setup --------------------------------------------------------------
    def _resolve_schedule(self) -> Any:
        if not isinstance(self.schedule, Schedule) or self.schedule.is_resolved():
            return self.schedule
        params = getattr(self, "params", None) or {}
        steps = params.get("steps")
        if steps is None:
            raise ValueError(
                f"{type(self.schedule).__name__} is given in epochs, but fit does not know how "
                "many steps an epoch has (an infinite or unsized dataset). Pass "
                "`steps_per_epoch=` to fit or to the schedule."
            )
        resolved = self.schedule.resolve(steps_per_epoch=int(steps), epochs=params.get("epochs"))
        if not resolved.is_resolved():
            resolved.total_steps  # raises the "no known length" error  # noqa: B018
        return resolved

    def _momentum_attr(self, schedule: Any) -> str | None:
        wants = bool(getattr(schedule, "cycles_momentum", False))
        if self.cycle_momentum is False or (self.cycle_momentum == "auto" and not wants):
            return None
        if self.cycle_momentum is True and not wants:
            raise ValueError(
                f"cycle_momentum=True, but schedule {type(schedule).__name__} defines no "
                "momentum cycle. Use OneCycle, or CyclicalLR with base_momentum/max_momentum. "
                f"Received: cycle_momentum={self.cycle_momentum!r}"
            )
        optimizer = base_optimizer(self.model.optimizer)
        attr = momentum_attribute(optimizer)
        if attr is None:
            if self.cycle_momentum is True:
                raise ValueError(
                    f"Cannot cycle momentum: optimizer {type(optimizer).__name__} has no "
                    "`momentum` (or it was created with momentum=0, so Keras keeps no momentum "
                    "state) and no `beta_1`. Create it with momentum > 0 (e.g. "
                    "`SGD(learning_rate, momentum=0.9)`), use an Adam-type optimizer, or pass "
                    "`cycle_momentum=False`. Received: cycle_momentum=True"
                )
            logger.info(
                "%s: optimizer %s has no momentum/beta_1; momentum is not cycled.",
                type(self).__name__,
                type(optimizer).__name__,
            )
        return attr

    def on_train_begin(self, logs: dict | None = None) -> None:
        optimizer = base_optimizer(self.model.optimizer)
        release_schedule(optimizer)  # left behind by a fit that raised
        learning_rate_variable(optimizer, "LRScheduler")  # clear error if not settable
        active = self._resolve_schedule()
        momentum_attr = self._momentum_attr(active)
        if read_float(optimizer.iterations) == 0:
            self.scale = 1.0
        with self.model.distribute_strategy.scope():
            self._offset = tf.Variable(0.0, trainable=False, name="keras_opt_lr_offset")
            self._scale = tf.Variable(self.scale, trainable=False, name="keras_opt_lr_scale")
        self._active = active
        wrapper = ScheduledLearningRate(active, self._offset, self._scale)
        install_schedule(self.model, wrapper)
        self._momentum_attr_name = momentum_attr
        if momentum_attr:
            offset, iterations = self._offset, optimizer.iterations

            def momentum() -> tf.Tensor:
                return active.momentum(tf.cast(iterations, tf.float32) + offset)

            install_momentum(self.model, momentum_attr, wrapper, momentum)
        retrace(self.model)
        self._first_epoch = True
        if self.plateau is not None:
            self.plateau.reset()

    def on_train_end(self, logs: dict | None = None) -> None:
        uninstall(self.model, self._momentum_attr_name)
        self._reset_state()

    # ----- per epoch (nothing runs per batch) -------------------------------------
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self._first_epoch:
            return
        self._first_epoch = False
        steps = (getattr(self, "params", None) or {}).get("steps")
        iterations = read_float(base_optimizer(self.model.optimizer).iterations)
        if iterations == 0 and epoch > 0 and steps:
            self._offset.assign(float(epoch * int(steps)))

    def _python_step(self) -> float:
        iterations = read_float(base_optimizer(self.model.optimizer).iterations)
        return max(iterations - 1.0, 0.0) + read_float(self._offset)

    def current_lr(self) -> float:
        """LR used by the last training step (schedule value times plateau scale).

        Returns:
            Float.
        """
        step = self._python_step()
        if isinstance(self._active, Schedule):
            value = self._active.lr_at(step)
        else:
            value = read_float(self._active(step))
        return value * self.scale

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        lr = self.current_lr()
        if logs is not None and self.log_key:
            logs[self.log_key] = lr
            if self._momentum_attr_name:
                logs[self._momentum_attr_name] = self._active.momentum_at(self._python_step())
        if self.verbose:
            logger.info("Epoch %d: learning rate %.6g", epoch + 1, lr)
        if self.plateau is not None:
            new = self.plateau.step(logs, self.scale)
            if new != self.scale:
                self.scale = new
                self._scale.assign(new)

    # ----- config -----------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, with the schedule and plateau serialized.

        Returns:
            Dict.
        """
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "cycle_momentum": self.cycle_momentum,
            "plateau": None if self.plateau is None else self.plateau.get_config(),
            "log_key": self.log_key,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LRScheduler:
        """Rebuild from `get_config`.

        Args:
            config: Dict.

        Returns:
            An `LRScheduler`.
        """
        config = dict(config)
        config["schedule"] = keras.optimizers.schedules.deserialize(config["schedule"])
        if config.get("plateau") is not None:
            config["plateau"] = Plateau.from_config(config["plateau"])
        return cls(**config)
