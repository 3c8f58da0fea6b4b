"""The one-cycle policy (Smith 2018; fastai ``fit_one_cycle``, PyTorch ``OneCycleLR``)."""

from __future__ import annotations

from typing import Any

from keras_opt import _validation as v
from keras_opt.backend import keras
from keras_opt.schedules._base import (
    Schedule,
    check_momentum_pair,
    check_steps_or_epochs,
    cosine_anneal,
    linear_anneal,
)

__all__ = ["OneCycle"]


@keras.utils.register_keras_serializable(package="keras_opt")
class OneCycle(Schedule):
    """One cycle: LR up from ``max_lr / div_factor`` to ``max_lr``, then far down.

    With ``T`` total steps and ``W = pct_start * T``, start ``a = max_lr /
    div_factor`` and end ``z = a / final_div_factor``:

    * ``t < W``: ``lr = anneal(a, max_lr, t / W)``, momentum
      ``anneal(max_momentum, base_momentum, t / W)``
    * ``t >= W``: ``lr = anneal(max_lr, z, (t - W) / (T - W))``, momentum
      ``anneal(base_momentum, max_momentum, ...)``

    where ``anneal`` is cosine (``"cos"``, fastai's and PyTorch's default) or
    linear. Momentum (``beta_1`` for Adam-type optimizers) moves in opposite
    phase to the LR; the `keras_opt.callbacks.LRScheduler` callback applies
    it. Defaults follow PyTorch's ``OneCycleLR`` (``div_factor=25``,
    ``final_div_factor=1e4``, momentum 0.85–0.95) with fastai's
    ``pct_start=0.25``.

    Args:
        max_lr: Float > 0. Peak LR.
        total_steps: Integer or None. Length in optimizer steps.
        epochs: Float or None. Length in epochs.
        pct_start: Float in (0, 1). Fraction of the run spent increasing the LR.
        div_factor: Float >= 1. ``max_lr / start LR``.
        final_div_factor: Float >= 1. ``start LR / final LR``.
        anneal: String. ``"cos"`` or ``"linear"``.
        base_momentum: Float in [0, 1). Momentum at the LR peak.
        max_momentum: Float in [0, 1). Momentum at both ends.
        steps_per_epoch: Integer or None. Used to turn epochs into steps.

    Returns:
        A Keras ``LearningRateSchedule`` that also defines `momentum_at`.

    Example:
        >>> from keras_opt.schedules import OneCycle
        >>> s = OneCycle(max_lr=0.01, total_steps=100, pct_start=0.3)
        >>> round(s.lr_at(0), 8), round(s.lr_at(30), 8), round(s.momentum_at(30), 8)
        (0.0004, 0.01, 0.85)
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int | None = None,
        epochs: float | None = None,
        pct_start: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        anneal: str = "cos",
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        steps_per_epoch: int | None = None,
    ) -> None:
        v.positive("max_lr", max_lr)
        check_steps_or_epochs("total_steps", total_steps, "epochs", epochs)
        v.in_range("pct_start", pct_start, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        if v.number("div_factor", div_factor) < 1:  # type: ignore[operator]
            v.fail("div_factor", ">= 1", div_factor)
        if v.number("final_div_factor", final_div_factor) < 1:  # type: ignore[operator]
            v.fail("final_div_factor", ">= 1", final_div_factor)
        v.one_of("anneal", anneal, ("cos", "linear"))
        check_momentum_pair(base_momentum, max_momentum)
        v.integer("steps_per_epoch", steps_per_epoch, minimum=1, allow_none=True)
        super().__init__(
            max_lr=max_lr,
            total_steps=total_steps,
            epochs=epochs,
            pct_start=pct_start,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            anneal=anneal,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            steps_per_epoch=steps_per_epoch,
        )

    @property
    def cycles_momentum(self) -> bool:
        """Boolean. True: one-cycle moves momentum opposite to the LR."""
        return True

    def _phases(self, step: Any, m: Any, low: Any, high: Any, rising: bool) -> Any:
        c = self._config
        total = float(self.total_steps)
        warm = max(c["pct_start"] * total, 1.0)
        anneal = cosine_anneal if c["anneal"] == "cos" else linear_anneal
        p1 = m.clip(step / warm, 0.0, 1.0)
        p2 = m.clip((step - warm) / max(total - warm, 1.0), 0.0, 1.0)
        if rising:  # LR: low -> high -> final
            first = anneal(low, high, p1, m)
            second = anneal(high, low / c["final_div_factor"], p2, m)
        else:  # momentum: high -> low -> high
            first = anneal(high, low, p1, m)
            second = anneal(low, high, p2, m)
        return m.where(step < warm, first, second)

    def _formula(self, step: Any, m: Any) -> Any:
        c = self._config
        return self._phases(step, m, c["max_lr"] / c["div_factor"], c["max_lr"], True)

    def _momentum_formula(self, step: Any, m: Any) -> Any:
        c = self._config
        return self._phases(step, m, c["base_momentum"], c["max_momentum"], False)
