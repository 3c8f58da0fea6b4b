"""Magnitude pruning (TFMOT ``prune_low_magnitude``) with schedules that fit the fit.

`prune` wraps the chosen layers of a copy of the model. The schedule
(polynomial decay or constant, in steps or epochs) is resolved when the
fine-tuning ``fit`` starts, by the callback from `callbacks`: with only
``target_sparsity`` given, the sparsity ramps up over the first 70% of that
fit's steps and holds for the rest, so the stripped model has the target
sparsity. Fitting a pruned model without those callbacks raises a clear
``RuntimeError`` before TensorFlow runs anything.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import weakref
from typing import Any

from keras_opt import _validation
from keras_opt.optimization import _graph
from keras_opt.optimization._engine import get_engine
from keras_opt.optimization.layers import Selection, select_layers

__all__ = ["prune"]

logger = logging.getLogger(__name__)

_RAMP_FRACTION = 0.7
_UPDATES = 10


@dataclasses.dataclass
class _Plan:
    schedule: str
    target: float
    initial: float
    begin: float
    end: float | None
    unit: str
    frequency: int | None
    m_by_n: tuple[int, int] | None
    resolved: bool = False


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def plan_of(model: Any) -> _Plan | None:
    """The pruning plan `prune` attached to ``model``, if any."""
    return _PLANS.get(model)


def _parse_structured(structured: Any) -> tuple[int, int] | None:
    if structured is None:
        return None
    if isinstance(structured, str) and structured.count(":") == 1:
        m, n = structured.split(":")
        if m.isdigit() and n.isdigit() and 0 < int(m) < int(n):
            return int(m), int(n)
    _validation.fail("structured", "a string 'M:N' with 0 < M < N, such as '2:4'", structured)
    return None  # pragma: no cover


def prune(
    model: Any,
    target_sparsity: float | None = None,
    *,
    schedule: str = "polynomial",
    initial_sparsity: float = 0.0,
    begin: float = 0,
    end: float | None = None,
    unit: str = "steps",
    frequency: int | None = None,
    structured: str | None = None,
    layers: Selection = None,
    skip: Selection = None,
) -> Any:
    """Return a copy of ``model`` whose chosen layers are pruned while it trains.

    Fine-tune the result with ``callbacks=keras_opt.optimization.callbacks(pruned)``,
    then `strip` it. ``begin``/``end`` count from the start of that fit.

    Args:
        model: A built tf_keras Sequential or Functional model (nested models
            are inlined). It is not modified.
        target_sparsity: Float in [0, 1). Fraction of weights set to zero at the
            end of the schedule. Not used with ``structured``.
        schedule: String. ``"polynomial"`` (ramp from ``initial_sparsity`` to the
            target between ``begin`` and ``end``) or ``"constant"`` (target from
            ``begin`` on).
        initial_sparsity: Float in [0, 1). Start of the polynomial ramp.
        begin: Number >= 0. When pruning starts, in ``unit``.
        end: Number > ``begin`` or None. When the ramp ends, in ``unit``; None
            ends it after 70% of the fine-tuning fit.
        unit: String. ``"steps"`` or ``"epochs"`` (steps per epoch are read from
            the fit).
        frequency: Integer >= 1 or None. Steps between mask updates; None makes
            about 10 updates along the ramp.
        structured: String ``"M:N"`` (e.g. ``"2:4"``) for M-by-N structured
            sparsity (M zeros in every N weights along the input channels),
            applied at the first step.
        layers: Layer names, compiled regexes or classes to prune (see
            `keras_opt.optimization.layers`); None prunes every layer with
            prunable weights (Dense, Conv ...).
        skip: Layer selectors to leave dense.

    Returns:
        A new tf_keras model with TFMOT ``PruneLowMagnitude`` wrappers; compile
        it before fitting.

    Raises:
        FlavorError: under Keras 3.
        ValueError: for a sparsity outside [0, 1), an unknown layer name and
            other bad arguments.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> pruned = kopt.prune(model, target_sparsity=0.8)  # doctest: +SKIP
        >>> pruned.compile("adam", "sparse_categorical_crossentropy")  # doctest: +SKIP
        >>> pruned.fit(x, y, epochs=2, callbacks=kopt.callbacks(pruned))  # doctest: +SKIP
        >>> small = kopt.strip(pruned)  # doctest: +SKIP
    """
    engine = get_engine("prune")
    from keras_opt import backend

    backend.check_model(model)
    _graph.require_graph_model(model)
    m_by_n = _parse_structured(structured)
    _validation.one_of("schedule", schedule, ("polynomial", "constant"))
    _validation.one_of("unit", unit, ("steps", "epochs"))
    if m_by_n is None:
        if target_sparsity is None:
            _validation.fail(
                "target_sparsity",
                "a float in [0, 1)",
                None,
                hint="Pass e.g. target_sparsity=0.8, or structured='2:4'",
            )
        _validation.in_range("target_sparsity", target_sparsity, 0.0, 1.0, high_inclusive=False)
    elif target_sparsity is not None:
        _validation.fail(
            "target_sparsity",
            "None when `structured` is given (M:N sparsity fixes it at M/N)",
            target_sparsity,
        )
    _validation.in_range("initial_sparsity", initial_sparsity, 0.0, 1.0, high_inclusive=False)
    if target_sparsity is not None and initial_sparsity > target_sparsity:
        _validation.fail(
            "initial_sparsity", f"<= target_sparsity={target_sparsity}", initial_sparsity
        )
    _validation.non_negative("begin", begin)
    if end is not None:
        _validation.positive("end", end)
        if end <= begin:
            _validation.fail("end", f"> begin={begin}", end)
    _validation.integer("frequency", frequency, minimum=1, allow_none=True)

    flat = _graph.flatten_nested(model)
    chosen = select_layers(
        flat.layers,
        layers,
        skip,
        eligible=lambda layer: bool(engine.prunable_weights(layer)),
        what="pruned",
    )
    if not chosen:
        _validation.fail("layers", "a selection with at least one prunable layer", layers)

    def wrap(layer: Any) -> Any:
        if layer.name not in chosen:
            return layer
        # Placeholder schedule, resolved by the callback when the fit starts.
        if m_by_n is not None or schedule == "constant":
            sched = engine.constant_sparsity(target_sparsity or 0.5, 0, 1)
        else:
            sched = engine.polynomial_decay(initial_sparsity, target_sparsity or 0.0, 0, 1, 1)
        return engine.prune_layer(layer, sched, m_by_n)

    pruned = _graph.copy_model(flat, wrap)
    target = m_by_n[0] / m_by_n[1] if m_by_n is not None else float(target_sparsity or 0.0)
    _PLANS[pruned] = _Plan(
        schedule=schedule,
        target=target,
        initial=float(initial_sparsity),
        begin=begin,
        end=end,
        unit=unit,
        frequency=frequency,
        m_by_n=m_by_n,
    )
    _guard_fit(pruned)
    logger.info("Pruning %d layer(s): %s", len(chosen), ", ".join(sorted(chosen)))
    return pruned


def _guard_fit(model: Any) -> None:
    """Make ``model.fit`` fail clearly when the pruning callbacks are missing."""
    original = model.fit

    @functools.wraps(original)
    def fit(*args: Any, **kwargs: Any) -> Any:
        from keras_opt.optimization.pruning_callbacks import _classes

        step_class = _classes()["PruningStep"]

        cbs = kwargs.get("callbacks", args[5] if len(args) > 5 else None) or []
        if not any(isinstance(cb, step_class) for cb in cbs):
            raise RuntimeError(
                f"Model {model.name!r} was pruned with keras_opt.optimization.prune and "
                "needs the pruning callbacks while it trains: "
                "`model.fit(..., callbacks=keras_opt.optimization.callbacks(model) + [...])`. "
                "(TFMOT's bare UpdatePruningStep is not enough: the keras_opt callback also "
                "fits the pruning schedule to this fit's epochs and steps.)"
            )
        return original(*args, **kwargs)

    model.fit = fit


def resolve_schedules(model: Any, prunable: list, epochs: int | None, steps: int | None) -> None:
    """Turn the plan of ``model`` into concrete TFMOT schedule steps (first fit only)."""
    plan = plan_of(model)
    if plan is None or plan.resolved or not prunable or plan.m_by_n is not None:
        return
    import numpy as np

    start = int(np.asarray(prunable[0].pruning_step.numpy())) + 1
    if steps is None and (plan.unit == "epochs" or plan.end is None):
        raise ValueError(
            "keras_opt.optimization.prune needs the number of steps per epoch to fit the "
            "pruning schedule to this fit, but the data has no known length. Pass "
            "`steps_per_epoch=` to fit, or give `end=` and `frequency=` in steps to prune()."
        )
    per_epoch = 1 if plan.unit == "steps" else int(steps or 1)
    total = int(epochs or 1) * int(steps) if steps is not None else None
    begin = int(round(plan.begin * per_epoch))
    if plan.end is not None:
        end = int(round(plan.end * per_epoch))
    else:
        end = max(begin + 1, int(_RAMP_FRACTION * (int(total or 0) - 1)))
    if plan.schedule == "polynomial":
        freq = plan.frequency or max(1, (end - begin) // _UPDATES)
        if end - begin < freq:
            raise ValueError(
                f"The pruning ramp ({end - begin} steps from begin={plan.begin} to "
                f"end={plan.end} {plan.unit}) is shorter than frequency={freq}. Fit longer, "
                "lower `frequency`, or use schedule='constant'."
            )
        end = begin + ((end - begin) // freq) * freq
        if total is not None and end > total - 1:
            logger.warning(
                "The pruning ramp ends at step %d but this fit has %d steps: the target "
                "sparsity is reached only in a later fit.",
                end + 1,
                total,
            )
    else:
        freq = plan.frequency or max(1, int(total or 100) // _UPDATES)
    for layer in prunable:
        sched = layer.pruning_schedule
        sched.begin_step = start + begin
        sched.frequency = freq
        sched.end_step = start + end if plan.schedule == "polynomial" else -1
    plan.resolved = True
    logger.info(
        "Pruning schedule: %s from step %d to %s, mask update every %d steps.",
        plan.schedule,
        start + begin,
        start + end if plan.schedule == "polynomial" else "the end",
        freq,
    )
