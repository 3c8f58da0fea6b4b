"""Magnitude pruning with schedules that fit the fit, in both Keras flavors.

`prune` wraps the chosen layers of a copy of the model. The schedule
(polynomial decay or constant, in steps or epochs) is part of each wrapper's
config; with only ``target_sparsity`` given, the sparsity ramps up over the
first 70% of the fine-tuning fit's steps and holds for the rest, so the
stripped model has the target sparsity.

* Keras 3: keras_opt's native engine. Masks and the step counter are
  variables of the wrapper and every update runs inside the train step; the
  model's ``fit`` needs no callback (the returned model fits the schedule to
  its own fit), and neither does ``tuner.search``.
* tf_keras: TFMOT's ``prune_low_magnitude``; ``fit`` needs
  ``callbacks=keras_opt.optimization.callbacks(model)`` (keras_opt's tuners and
  `collaborative` add it). Without it the fit fails at once with a clear error.
"""

from __future__ import annotations

import logging
from typing import Any

from keras_opt import _validation, backend
from keras_opt.optimization import _graph, _plan
from keras_opt.optimization._engine import get_engine
from keras_opt.optimization.layers import Selection, select_weighted

__all__ = ["prune"]

logger = logging.getLogger(__name__)


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

    Fine-tune the result with an ordinary ``fit`` (under tf_keras add
    ``callbacks=keras_opt.optimization.callbacks(pruned)``), then `strip` it.
    ``begin``/``end`` count from the start of that fit. Keras 3 is served by
    keras_opt's native engine, tf_keras by TFMOT.

    Args:
        model: A built Sequential or Functional model of the flavor in use
            (nested models are kept under Keras 3, inlined under tf_keras). It
            is not modified.
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
            prunable weights (Dense, Conv1D/2D/3D, Conv2DTranspose,
            DepthwiseConv2D, SeparableConv2D, Embedding).
        skip: Layer selectors to leave dense.

    Returns:
        A new model whose pruned layers are ``PruneLowMagnitude`` wrappers
        (keras_opt's under Keras 3, TFMOT's under tf_keras); compile it before
        fitting.

    Raises:
        TypeError: for a model of the other flavor or a subclassed model.
        ValueError: for a sparsity outside [0, 1), a model with no prunable
            layer, an unknown or unprunable layer name and other bad arguments.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> pruned = kopt.prune(model, target_sparsity=0.8)  # doctest: +SKIP
        >>> pruned.compile("adam", "sparse_categorical_crossentropy")  # doctest: +SKIP
        >>> pruned.fit(x, y, epochs=2, callbacks=kopt.callbacks(pruned))  # doctest: +SKIP
        >>> small = kopt.strip(pruned)  # doctest: +SKIP
    """
    engine = get_engine("prune")
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
    chosen = select_weighted(
        flat,
        layers,
        skip,
        eligible=lambda layer: bool(engine.prunable_weights(layer)),
        what="pruned",
    )
    target = m_by_n[0] / m_by_n[1] if m_by_n is not None else float(target_sparsity or 0.0)
    plan = _plan.PruningPlan(
        schedule="constant" if m_by_n is not None else schedule,
        target=target,
        initial=float(initial_sparsity),
        begin=begin,
        end=end,
        unit=unit,
        frequency=frequency,
        m_by_n=m_by_n,
    )

    def wrap(layer: Any) -> Any:
        return engine.prune_layer(layer, plan) if layer.name in chosen else layer

    pruned = engine.finish_pruned(_graph.copy_model(flat, wrap))
    logger.info("Pruning %d layer(s): %s", len(chosen), ", ".join(sorted(chosen)))
    return pruned
