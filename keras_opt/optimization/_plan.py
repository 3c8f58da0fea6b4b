"""The pruning plan both engines carry, and how it is fitted to a fit.

`prune` records what the user asked for (a `PruningPlan`); the layer wrappers
carry it in their config, so it travels with the model (``clone_model``, deep
copies, ``.keras`` files). When ``end`` is None or the unit is epochs, the
concrete steps depend on the fine-tuning fit; `resolve` turns the plan into
steps once that fit's length is known.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

logger = logging.getLogger(__name__)

RAMP_FRACTION = 0.7
"""With ``end=None``, the ramp ends after this fraction of the first fit's steps."""
UPDATES = 10
"""With ``frequency=None``, about this many mask updates along the ramp."""


@dataclasses.dataclass(frozen=True)
class PruningPlan:
    """What `keras_opt.optimization.prune` was asked for.

    Attributes:
        schedule: ``"polynomial"`` or ``"constant"``.
        target: Final sparsity (M/N for structured sparsity).
        initial: Start of the polynomial ramp.
        begin: When pruning starts, in ``unit``, counted from the first fit.
        end: When the ramp ends, in ``unit``; None: after 70% of the first fit.
        unit: ``"steps"`` or ``"epochs"``.
        frequency: Steps between mask updates; None: about 10 along the ramp.
        m_by_n: ``(M, N)`` for M-by-N structured sparsity, else None.
    """

    schedule: str
    target: float
    initial: float = 0.0
    begin: float = 0
    end: float | None = None
    unit: str = "steps"
    frequency: int | None = None
    m_by_n: tuple[int, int] | None = None

    @property
    def needs_fit(self) -> bool:
        """True when the steps can only be known from the fine-tuning fit."""
        if self.m_by_n is not None:
            return False
        if self.unit == "epochs" or self.end is None:
            return True
        return self.schedule == "constant" and self.frequency is None

    def to_config(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        config = dataclasses.asdict(self)
        config["m_by_n"] = list(self.m_by_n) if self.m_by_n else None
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PruningPlan:
        """Inverse of `to_config`."""
        config = dict(config)
        m_by_n = config.get("m_by_n")
        config["m_by_n"] = tuple(m_by_n) if m_by_n else None
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class Steps:
    """A plan in concrete steps: ``end == -1`` means no end (constant schedule)."""

    begin: int
    end: int
    frequency: int

    def to_config(self) -> dict[str, int]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def resolve(plan: PruningPlan, start: int, epochs: int | None, steps: int | None) -> Steps:
    """Fit ``plan`` to a fit of ``epochs`` x ``steps`` that starts at step ``start``.

    Args:
        plan: The `PruningPlan`.
        start: Integer. The wrapper's step counter when the fit starts.
        epochs: Integer or None. Epochs of the fit (``fit``'s ``params``).
        steps: Integer or None. Steps per epoch (None when the data has no length).

    Returns:
        The concrete `Steps`.

    Raises:
        ValueError: when the plan needs the fit's length and the data has none,
            or when the ramp is shorter than the update frequency.
    """
    if plan.m_by_n is not None:
        return Steps(start, -1, 1)
    if steps is None and plan.needs_fit:
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
        end = max(begin + 1, int(RAMP_FRACTION * (int(total or 0) - 1)))
    if plan.schedule == "constant":
        freq = plan.frequency or max(1, int(total or 100) // UPDATES)
        return Steps(start + begin, -1, freq)
    freq = plan.frequency or max(1, (end - begin) // UPDATES)
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
    return Steps(start + begin, start + end, freq)


def polynomial_sparsity(plan: PruningPlan, steps: Steps, step: float) -> float:
    """The sparsity at ``step`` (TFMOT's PolynomialDecay, exponent 3), for tests and docs.

    Example:
        >>> plan = PruningPlan("polynomial", target=0.8)
        >>> polynomial_sparsity(plan, Steps(0, 100, 10), 100)
        0.8
    """
    if plan.schedule == "constant" or plan.m_by_n is not None:
        return plan.target
    p = min(1.0, max(0.0, (step - steps.begin) / max(1, steps.end - steps.begin)))
    return plan.target + (plan.initial - plan.target) * (1.0 - p) ** 3


def unresolved_error(layer_name: str) -> RuntimeError:
    """The error for a pruned layer trained before its plan met a fit."""
    return RuntimeError(
        f"Layer {layer_name!r} was pruned with keras_opt.optimization.prune, whose schedule "
        "is fitted to the fine-tuning fit (end=None or unit='epochs'), but it is training "
        "before that fit resolved it. Under Keras 3, call `fit` on the model prune() "
        "returned (not on a model you built around it); under tf_keras, pass "
        "`callbacks=keras_opt.optimization.callbacks(model)` to fit (keras_opt's tuners do "
        "this for you). Or give `end=` and `frequency=` in steps to prune()."
    )
