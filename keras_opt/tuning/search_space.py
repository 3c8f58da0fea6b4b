"""Hyper-parameters for schedules and compression, for use inside ``build(hp)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras_opt import _validation as v
from keras_opt.schedules import CosineRestarts, OneCycle, WarmupDecay

__all__ = ["learning_rate", "compression"]

SCHEDULES = ("constant", "warmup_cosine", "one_cycle", "cosine_restarts")


def learning_rate(
    hp: Any,
    total_steps: int,
    schedules: Sequence[str] = SCHEDULES,
    min_lr: float = 1e-4,
    max_lr: float = 3e-2,
    name: str = "lr",
) -> Any:
    """Tune the schedule and its peak LR; returns a float or an in-graph schedule.

    Hyper-parameters: ``<name>_schedule`` (a choice among ``schedules``),
    ``<name>`` (log-uniform in ``[min_lr, max_lr]``) and, for warmup cosine,
    ``<name>_warmup_pct``. Pass the result to the optimizer as ``learning_rate``.

    Args:
        hp: ``keras_tuner.HyperParameters``.
        total_steps: Integer >= 2. Optimizer steps of one trial's fit
            (epochs × steps per epoch).
        schedules: Names from ``("constant", "warmup_cosine", "one_cycle",
            "cosine_restarts")``.
        min_lr: Float > 0. Lower bound of the peak LR.
        max_lr: Float > ``min_lr``. Upper bound.
        name: String. Prefix of the hyper-parameter names.

    Returns:
        A float (``"constant"``) or a `keras_opt.schedules.Schedule`.

    Example:
        >>> import keras_tuner as kt
        >>> from keras_opt.tuning import learning_rate
        >>> hp = kt.HyperParameters()
        >>> lr = learning_rate(hp, total_steps=100, schedules=["one_cycle"])
        >>> type(lr).__name__, sorted(hp.values)
        ('OneCycle', ['lr', 'lr_schedule'])
    """
    v.integer("total_steps", total_steps, minimum=2)
    schedules = list(schedules)
    if not schedules:
        v.fail("schedules", f"a non-empty subset of {SCHEDULES}", schedules)
    for s in schedules:
        v.one_of("schedules", s, SCHEDULES)
    v.positive("min_lr", min_lr)
    v.positive("max_lr", max_lr)
    if max_lr <= min_lr:
        v.fail("max_lr", f"> min_lr={min_lr}", max_lr)
    kind = hp.Choice(f"{name}_schedule", schedules)
    peak = hp.Float(name, min_lr, max_lr, sampling="log")
    if kind == "constant":
        return peak
    if kind == "warmup_cosine":
        pct = hp.Float(
            f"{name}_warmup_pct",
            0.0,
            0.3,
            step=0.1,
            parent_name=f"{name}_schedule",
            parent_values=["warmup_cosine"],
        )
        return WarmupDecay(peak, total_steps=total_steps, warmup_steps=int(pct * total_steps))
    if kind == "one_cycle":
        return OneCycle(peak, total_steps=total_steps)
    return CosineRestarts(peak, first_period_steps=max(total_steps // 3, 1), period_mult=1.0)


def compression(
    hp: Any,
    sparsity: tuple[float, float] | None = (0.5, 0.9),
    clusters: Sequence[int] | None = (8, 16, 32),
    qat: bool | None = None,
    layers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Tune compression settings; returns them as a dict for `keras_opt.optimization`.

    Hyper-parameters: ``target_sparsity`` (step 0.1 in ``sparsity``),
    ``number_of_clusters`` (a choice), ``qat`` (boolean, unless fixed) and
    ``compress_layers`` (a choice among ``layers``, when given). A ``None``
    argument leaves that technique out.

    Args:
        hp: ``keras_tuner.HyperParameters``.
        sparsity: ``(low, high)`` in [0, 1) or None.
        clusters: Sequence of integers >= 2, or None.
        qat: True/False to fix quantization-aware training, None to tune it.
        layers: Layer names (or regexes) to choose from, or None for all layers.

    Returns:
        Dict with keys among ``target_sparsity``, ``number_of_clusters``,
        ``quantize``, ``layers``.

    Example:
        >>> import keras_tuner as kt
        >>> from keras_opt.tuning import compression
        >>> cfg = compression(kt.HyperParameters(), clusters=None, qat=False)
        >>> sorted(cfg)
        ['quantize', 'target_sparsity']
    """
    out: dict[str, Any] = {}
    if sparsity is not None:
        low, high = sparsity
        v.in_range("sparsity[0]", low, 0.0, 1.0, high_inclusive=False)
        v.in_range("sparsity[1]", high, 0.0, 1.0, high_inclusive=False)
        if high < low:
            v.fail("sparsity", "(low, high) with low <= high", sparsity)
        out["target_sparsity"] = hp.Float("target_sparsity", low, high, step=0.1)
    if clusters is not None:
        values = [int(v.integer("clusters", c, minimum=2) or 0) for c in clusters]
        out["number_of_clusters"] = hp.Choice("number_of_clusters", values)
    if qat is None:
        out["quantize"] = hp.Boolean("qat")
    else:
        if not isinstance(qat, bool):
            v.fail("qat", "True, False or None", qat, exc=TypeError)
        out["quantize"] = qat
    if layers is not None:
        out["layers"] = hp.Choice("compress_layers", list(layers))
    return out
