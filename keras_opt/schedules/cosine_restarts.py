"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017)."""

from __future__ import annotations

from typing import Any

from keras_opt import _validation as v
from keras_opt.backend import keras
from keras_opt.schedules._base import Schedule, check_steps_or_epochs, cosine_anneal

__all__ = ["CosineRestarts"]


@keras.utils.register_keras_serializable(package="keras_opt")
class CosineRestarts(Schedule):
    """SGDR: cosine decay from a peak to ``min_lr``, restarted with longer periods.

    With ``T0`` the first period in steps and ``r = period_mult``, cycle ``i``
    lasts ``T0 * r**i`` steps and starts at ``S_i = T0 * (r**i - 1) / (r - 1)``
    (``T0 * i`` when ``r == 1``). Inside it, with ``p = (t - S_i) / (T0 * r**i)``:

    ``lr = min_lr + (peak_lr * peak_mult**i - min_lr) * (1 + cos(pi * p)) / 2``

    This is Keras' ``CosineDecayRestarts`` (``t_mul`` = ``period_mult``,
    ``m_mul`` = ``peak_mult``) with an absolute ``min_lr`` instead of a fraction,
    lengths in steps or epochs, and an optional linear warmup.

    Args:
        peak_lr: Float > 0. LR at the start of the first cycle.
        first_period_steps: Integer or None. ``T0`` in steps.
        first_period_epochs: Float or None. ``T0`` in epochs.
        period_mult: Float >= 1. Each period is this many times longer.
        peak_mult: Float in (0, 1]. Each restart peaks this many times lower.
        min_lr: Float >= 0, below ``peak_lr``.
        warmup_steps: Integer or None. Linear warmup from 0 before the first
            cycle (the cycles then start after the warmup).
        warmup_epochs: Float or None. The same in epochs.
        steps_per_epoch: Integer or None. Used to turn epochs into steps.

    Returns:
        A Keras ``LearningRateSchedule`` (runs forever: no total length needed).

    Example:
        >>> from keras_opt.schedules import CosineRestarts
        >>> s = CosineRestarts(peak_lr=0.1, first_period_steps=10, period_mult=2.0)
        >>> s.lr_at(0), s.lr_at(10), s.lr_at(30)  # restarts at 10 and 10 + 20
        (0.1, 0.1, 0.1)
    """

    needs_total = False

    def __init__(
        self,
        peak_lr: float,
        first_period_steps: int | None = None,
        first_period_epochs: float | None = None,
        period_mult: float = 2.0,
        peak_mult: float = 1.0,
        min_lr: float = 0.0,
        warmup_steps: int | None = None,
        warmup_epochs: float | None = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        v.positive("peak_lr", peak_lr)
        check_steps_or_epochs(
            "first_period_steps",
            first_period_steps,
            "first_period_epochs",
            first_period_epochs,
            required=True,
        )
        if warmup_steps == 0:
            warmup_steps = None
        check_steps_or_epochs("warmup_steps", warmup_steps, "warmup_epochs", warmup_epochs)
        if v.number("period_mult", period_mult) < 1.0:  # type: ignore[operator]
            v.fail("period_mult", ">= 1", period_mult)
        v.in_range("peak_mult", peak_mult, 0.0, 1.0, low_inclusive=False)
        v.non_negative("min_lr", min_lr)
        if min_lr >= peak_lr:
            v.fail("min_lr", f"< peak_lr={peak_lr}", min_lr)
        v.integer("steps_per_epoch", steps_per_epoch, minimum=1, allow_none=True)
        super().__init__(
            peak_lr=peak_lr,
            first_period_steps=first_period_steps,
            first_period_epochs=first_period_epochs,
            period_mult=period_mult,
            peak_mult=peak_mult,
            min_lr=min_lr,
            warmup_steps=warmup_steps,
            warmup_epochs=warmup_epochs,
            steps_per_epoch=steps_per_epoch,
        )

    def _epoch_fields(self) -> list[tuple[str, str]]:
        return [
            ("first_period_steps", "first_period_epochs"),
            ("warmup_steps", "warmup_epochs"),
        ]

    def _formula(self, step: Any, m: Any) -> Any:
        c = self._config
        t0 = float(self._steps("first_period_steps", "first_period_epochs"))  # type: ignore[arg-type]
        warmup = float(self._steps("warmup_steps", "warmup_epochs") or 0)
        mult, peak, low = c["period_mult"], c["peak_lr"], c["min_lr"]
        t = m.maximum(step - warmup, 0.0)
        if mult == 1.0:
            i = m.floor(t / t0)
            start = i * t0
            period = t0 + 0.0 * t
        else:
            i = m.floor(m.log(1.0 - t / t0 * (1.0 - mult)) / m.log(mult))
            # Guard float error at exact restart boundaries.
            start = t0 * (1.0 - m.power(mult, i)) / (1.0 - mult)
            i = m.where(t < start, i - 1.0, i)
            start = t0 * (1.0 - m.power(mult, i)) / (1.0 - mult)
            nxt = t0 * (1.0 - m.power(mult, i + 1.0)) / (1.0 - mult)
            i = m.where(t >= nxt, i + 1.0, i)
            start = t0 * (1.0 - m.power(mult, i)) / (1.0 - mult)
            period = t0 * m.power(mult, i)
        p = m.clip((t - start) / period, 0.0, 1.0)
        lr = cosine_anneal(peak * m.power(c["peak_mult"], i), low, p, m)
        if warmup == 0:
            return lr
        return m.where(step < warmup, peak * m.minimum(step, warmup) / warmup, lr)
