"""Linear warmup followed by cosine, linear, exponential, step or polynomial decay."""

from __future__ import annotations

from typing import Any

from keras_opt import _validation as v
from keras_opt.backend import keras
from keras_opt.schedules._base import (
    Schedule,
    check_steps_or_epochs,
    cosine_anneal,
    linear_anneal,
)

__all__ = ["WarmupDecay"]

DECAYS = ("cosine", "linear", "exponential", "step", "polynomial", "constant")


@keras.utils.register_keras_serializable(package="keras_opt")
class WarmupDecay(Schedule):
    """Linear warmup to ``peak_lr``, then one of six decays down to ``final_lr``.

    With ``W`` warmup steps, ``T`` total steps, ``t`` the optimizer step and
    ``p = clip((t - W) / (T - W), 0, 1)``:

    * warmup (``t < W``): ``warmup_start_lr + (peak_lr - warmup_start_lr) * t / W``
    * ``"cosine"``: ``final_lr + (peak_lr - final_lr) * (1 + cos(pi * p)) / 2``
    * ``"linear"``: ``peak_lr + (final_lr - peak_lr) * p``
    * ``"polynomial"``: ``(peak_lr - final_lr) * (1 - p) ** power + final_lr``
    * ``"exponential"``: ``max(final_lr, peak_lr * decay_rate ** ((t - W) / D))``
    * ``"step"``: ``max(final_lr, peak_lr * decay_rate ** floor((t - W) / D))``
    * ``"constant"``: ``peak_lr``

    ``D`` is ``decay_steps`` (or ``decay_epochs``); for ``"exponential"`` it
    defaults to ``T - W``, i.e. the LR falls by ``decay_rate`` over the run.
    After ``T`` the LR stays at its final value. Keras' ``CosineDecay`` with
    ``warmup_steps`` is the cosine case of this schedule.

    Args:
        peak_lr: Float > 0. LR reached at the end of warmup.
        decay: String. One of ``"cosine"``, ``"linear"``, ``"exponential"``,
            ``"step"``, ``"polynomial"``, ``"constant"``.
        total_steps: Integer or None. Length of the whole schedule (warmup
            included) in optimizer steps.
        epochs: Float or None. The same length in epochs (needs
            ``steps_per_epoch``, filled in by `keras_opt.callbacks.LRScheduler`).
        warmup_steps: Integer or None. Warmup length in steps (default 0).
        warmup_epochs: Float or None. Warmup length in epochs.
        warmup_start_lr: Float >= 0. LR at step 0. Defaults to 0.
        final_lr: Float >= 0, below ``peak_lr``. LR at the end. Defaults to 0.
        decay_rate: Float in (0, 1). Factor of the exponential and step decays.
        decay_steps: Integer or None. ``D`` above, in steps.
        decay_epochs: Float or None. ``D`` above, in epochs.
        power: Float > 0. Exponent of the polynomial decay.
        steps_per_epoch: Integer or None. Used to turn epochs into steps.

    Returns:
        A Keras ``LearningRateSchedule``.

    Raises:
        ValueError: on a non-positive LR, ``final_lr >= peak_lr``, a warmup as
            long as the run, an unknown ``decay`` and the like; each message
            names the argument and the value received.

    Example:
        >>> from keras_opt.schedules import WarmupDecay
        >>> s = WarmupDecay(peak_lr=1e-3, total_steps=1000, warmup_steps=100)
        >>> s.lr_at(50), s.lr_at(100), round(s.lr_at(550), 6)
        (0.0005, 0.001, 0.0005)
    """

    def __init__(
        self,
        peak_lr: float,
        decay: str = "cosine",
        total_steps: int | None = None,
        epochs: float | None = None,
        warmup_steps: int | None = None,
        warmup_epochs: float | None = None,
        warmup_start_lr: float = 0.0,
        final_lr: float = 0.0,
        decay_rate: float = 0.1,
        decay_steps: int | None = None,
        decay_epochs: float | None = None,
        power: float = 1.0,
        steps_per_epoch: int | None = None,
    ) -> None:
        v.positive("peak_lr", peak_lr)
        v.one_of("decay", decay, DECAYS)
        check_steps_or_epochs("total_steps", total_steps, "epochs", epochs)
        if warmup_steps is not None and warmup_steps == 0:
            warmup_steps = None
        check_steps_or_epochs("warmup_steps", warmup_steps, "warmup_epochs", warmup_epochs)
        check_steps_or_epochs("decay_steps", decay_steps, "decay_epochs", decay_epochs)
        v.non_negative("warmup_start_lr", warmup_start_lr)
        v.non_negative("final_lr", final_lr)
        if decay != "constant" and final_lr >= peak_lr:
            v.fail("final_lr", f"< peak_lr={peak_lr}", final_lr)
        if warmup_start_lr > peak_lr:
            v.fail("warmup_start_lr", f"<= peak_lr={peak_lr}", warmup_start_lr)
        v.in_range("decay_rate", decay_rate, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        v.positive("power", power)
        v.integer("steps_per_epoch", steps_per_epoch, minimum=1, allow_none=True)
        if decay == "step" and decay_steps is None and decay_epochs is None:
            raise ValueError(
                "decay='step' needs the interval between drops. Pass `decay_steps=` or "
                "`decay_epochs=`. Received: decay_steps=None, decay_epochs=None"
            )
        super().__init__(
            peak_lr=peak_lr,
            decay=decay,
            total_steps=total_steps,
            epochs=epochs,
            warmup_steps=warmup_steps,
            warmup_epochs=warmup_epochs,
            warmup_start_lr=warmup_start_lr,
            final_lr=final_lr,
            decay_rate=decay_rate,
            decay_steps=decay_steps,
            decay_epochs=decay_epochs,
            power=power,
            steps_per_epoch=steps_per_epoch,
        )
        if self.is_resolved():
            self._check()

    def _epoch_fields(self) -> list[tuple[str, str]]:
        return [
            ("total_steps", "epochs"),
            ("warmup_steps", "warmup_epochs"),
            ("decay_steps", "decay_epochs"),
        ]

    @property
    def warmup_steps(self) -> int:
        """Integer. Warmup length in steps."""
        return self._steps("warmup_steps", "warmup_epochs") or 0

    def _check(self) -> None:
        total, warmup = self.total_steps, self.warmup_steps
        if warmup >= total:
            raise ValueError(
                f"The warmup must be shorter than the run. Received: warmup_steps={warmup} "
                f"with total_steps={total}"
                + (
                    f" (warmup_epochs={self._config['warmup_epochs']}, "
                    f"epochs={self._config['epochs']})"
                    if self._config.get("warmup_epochs") is not None
                    else ""
                )
            )

    def _formula(self, step: Any, m: Any) -> Any:
        c = self._config
        peak, final = c["peak_lr"], c["final_lr"]
        total, warmup = self.total_steps, self.warmup_steps
        decay_len = max(total - warmup, 1)
        p = m.clip((step - warmup) / decay_len, 0.0, 1.0)
        decay = c["decay"]
        if decay == "cosine":
            after = cosine_anneal(peak, final, p, m)
        elif decay == "linear":
            after = linear_anneal(peak, final, p, m)
        elif decay == "polynomial":
            after = (peak - final) * m.power(1.0 - p, c["power"]) + final
        elif decay == "constant":
            after = peak + 0.0 * p
        else:
            d = self._steps("decay_steps", "decay_epochs") or decay_len
            elapsed = m.clip(step - warmup, 0.0, float(decay_len))
            exponent = elapsed / d if decay == "exponential" else m.floor(elapsed / d)
            after = m.maximum(peak * m.power(c["decay_rate"], exponent), final)
        if warmup == 0:
            return after
        start = c["warmup_start_lr"]
        during = start + (peak - start) * m.minimum(step, float(warmup)) / warmup
        return m.where(step < warmup, during, after)
