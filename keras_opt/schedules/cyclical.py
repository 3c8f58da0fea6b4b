"""Cyclical learning rates (Smith 2017), successor of tensorflow-addons CyclicalLearningRate."""

from __future__ import annotations

from typing import Any

from keras_opt import _validation as v
from keras_opt.backend import keras
from keras_opt.schedules._base import Schedule, check_momentum_pair, check_steps_or_epochs

__all__ = ["CyclicalLR"]

MODES = ("triangular", "triangular2", "exp_range")


@keras.utils.register_keras_serializable(package="keras_opt")
class CyclicalLR(Schedule):
    """Triangular cycles between ``base_lr`` and ``max_lr``.

    With ``s`` the half-cycle length in steps (``step_size``):
    ``cycle = floor(1 + t / (2 s))``, ``x = |t / s - 2 cycle + 1|`` and

    ``lr = base_lr + (max_lr - base_lr) * max(0, 1 - x) * scale``

    where ``scale`` is 1 (``"triangular"``), ``1 / 2**(cycle - 1)``
    (``"triangular2"``) or ``gamma**t`` (``"exp_range"``) — the formulas of
    tensorflow-addons' ``CyclicalLearningRate`` and PyTorch's ``CyclicLR``.
    When ``base_momentum``/``max_momentum`` are given, momentum cycles in
    opposite phase: ``max_momentum - (max_momentum - base_momentum) * max(0, 1 - x) * scale``.

    Args:
        base_lr: Float > 0. Lower bound.
        max_lr: Float > ``base_lr``. Upper bound.
        step_size: Integer or None. Half a cycle, in steps.
        step_size_epochs: Float or None. Half a cycle, in epochs.
        mode: String. ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: Float in (0, 1]. Per-step decay of ``"exp_range"``.
        base_momentum: Float or None. Momentum at the LR peak.
        max_momentum: Float or None. Momentum at the LR trough.
        steps_per_epoch: Integer or None. Used to turn epochs into steps.

    Returns:
        A Keras ``LearningRateSchedule`` (runs forever).

    Example:
        >>> from keras_opt.schedules import CyclicalLR
        >>> s = CyclicalLR(base_lr=0.001, max_lr=0.006, step_size=10)
        >>> s.lr_at(0), s.lr_at(10), s.lr_at(20)
        (0.001, 0.006, 0.001)
    """

    needs_total = False

    def __init__(
        self,
        base_lr: float,
        max_lr: float,
        step_size: int | None = None,
        step_size_epochs: float | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        base_momentum: float | None = None,
        max_momentum: float | None = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        v.positive("base_lr", base_lr)
        v.positive("max_lr", max_lr)
        if max_lr <= base_lr:
            v.fail("max_lr", f"> base_lr={base_lr}", max_lr)
        check_steps_or_epochs(
            "step_size", step_size, "step_size_epochs", step_size_epochs, required=True
        )
        v.one_of("mode", mode, MODES)
        v.in_range("gamma", gamma, 0.0, 1.0, low_inclusive=False)
        if (base_momentum is None) != (max_momentum is None):
            raise ValueError(
                "Pass both `base_momentum` and `max_momentum` to cycle momentum, or neither. "
                f"Received: base_momentum={base_momentum!r}, max_momentum={max_momentum!r}"
            )
        if base_momentum is not None:
            check_momentum_pair(base_momentum, max_momentum)
        v.integer("steps_per_epoch", steps_per_epoch, minimum=1, allow_none=True)
        super().__init__(
            base_lr=base_lr,
            max_lr=max_lr,
            step_size=step_size,
            step_size_epochs=step_size_epochs,
            mode=mode,
            gamma=gamma,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            steps_per_epoch=steps_per_epoch,
        )

    def _epoch_fields(self) -> list[tuple[str, str]]:
        return [("step_size", "step_size_epochs")]

    @property
    def cycles_momentum(self) -> bool:
        """Boolean. True when momentum bounds were given."""
        return self._config["base_momentum"] is not None

    def _wave(self, step: Any, m: Any) -> Any:
        c = self._config
        s = float(self._steps("step_size", "step_size_epochs"))  # type: ignore[arg-type]
        cycle = m.floor(1.0 + step / (2.0 * s))
        x = m.abs(step / s - 2.0 * cycle + 1.0)
        if c["mode"] == "triangular":
            scale = 1.0
        elif c["mode"] == "triangular2":
            scale = 1.0 / m.power(2.0, cycle - 1.0)
        else:
            scale = m.power(c["gamma"], step)
        return m.maximum(0.0, 1.0 - x) * scale

    def _formula(self, step: Any, m: Any) -> Any:
        c = self._config
        return c["base_lr"] + (c["max_lr"] - c["base_lr"]) * self._wave(step, m)

    def _momentum_formula(self, step: Any, m: Any) -> Any:
        c = self._config
        if c["base_momentum"] is None:
            return None
        return c["max_momentum"] - (c["max_momentum"] - c["base_momentum"]) * self._wave(step, m)
