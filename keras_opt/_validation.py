"""Argument checks shared by every public function.

One message formula everywhere, taken from Keras' ``learning_rate_schedule.py``:
``Argument `decay_steps` must be > 0. Received: decay_steps=-3``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def _fail(name: str, rule: str, value: Any, hint: str = "", exc: type = ValueError) -> None:
    msg = f"Argument `{name}` must be {rule}. Received: {name}={value!r}"
    if hint:
        msg += f". {hint}"
    raise exc(msg)


def number(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """Return ``value`` as a finite float, or raise TypeError/ValueError."""
    if value is None and allow_none:
        return None
    if isinstance(value, np.number):  # numpy scalars (np.bool_ is not a np.number)
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(name, "a number", value, exc=TypeError)
    value = float(value)
    if not math.isfinite(value):
        _fail(name, "finite", value)
    return value


def positive(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """Check ``value > 0``."""
    v = number(name, value, allow_none=allow_none)
    if v is not None and v <= 0:
        _fail(name, "> 0", value)
    return v


def non_negative(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    """Check ``value >= 0``."""
    v = number(name, value, allow_none=allow_none)
    if v is not None and v < 0:
        _fail(name, ">= 0", value)
    return v


def in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    allow_none: bool = False,
) -> float | None:
    """Check ``low <= value <= high`` (inclusivity configurable)."""
    v = number(name, value, allow_none=allow_none)
    if v is None:
        return None
    ok_low = v >= low if low_inclusive else v > low
    ok_high = v <= high if high_inclusive else v < high
    if not (ok_low and ok_high):
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        _fail(name, f"in {lo}{low}, {high}{hi}", value)
    return v


def integer(
    name: str, value: Any, *, minimum: int | None = None, allow_none: bool = False
) -> int | None:
    """Check ``value`` is an int (not bool) and ``>= minimum``."""
    if value is None and allow_none:
        return None
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, "an integer", value, exc=TypeError)
    if minimum is not None and value < minimum:
        _fail(name, f">= {minimum}", value)
    return int(value)


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        _fail(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def fail(name: str, rule: str, value: Any, hint: str = "", exc: type = ValueError) -> None:
    """Raise the standard error for argument ``name``."""
    _fail(name, rule, value, hint, exc)
