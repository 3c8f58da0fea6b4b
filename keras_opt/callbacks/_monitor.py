"""Shared monitor logic: ``monitor``, ``mode``, ``min_delta`` and improvement tests.

Keras' ``monitor_callback.py`` is the model: ``mode="auto"`` is resolved at the
first epoch end, once the metrics exist, and an unknown mode raises instead of
quietly falling back (as Lightning's ``early_stopping.py`` does).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from keras_opt import _validation as v

MODES = ("auto", "min", "max")
_MAX_HINTS = ("acc", "accuracy", "auc", "precision", "recall", "f1", "iou", "top_k")


class MonitorState:
    """Tracks the best value of one logged metric.

    Args:
        monitor: String. Key in ``logs``, e.g. ``"val_loss"``.
        mode: String. ``"auto"``, ``"min"`` or ``"max"``. ``"auto"`` means
            ``"max"`` for accuracy-like names and ``"min"`` otherwise.
        min_delta: Float >= 0. Smallest change that counts as an improvement.

    Example:
        >>> s = MonitorState("val_loss")
        >>> s.update({"val_loss": 1.0}), s.update({"val_loss": 1.2})
        (True, False)
    """

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0) -> None:
        if not isinstance(monitor, str) or not monitor:
            v.fail("monitor", "a non-empty string", monitor, exc=TypeError)
        v.one_of("mode", mode, MODES)
        v.non_negative("min_delta", min_delta)
        self.monitor = monitor
        self.mode = mode
        self.min_delta = float(min_delta)
        self.reset()

    def reset(self) -> None:
        """Forget the best value (called at ``on_train_begin``)."""
        self.best: float | None = None
        self._resolved_mode: str | None = None if self.mode == "auto" else self.mode
        self._warned = False

    @property
    def resolved_mode(self) -> str:
        """String. ``"min"`` or ``"max"`` once resolved (``"auto"`` before)."""
        return self._resolved_mode or self.mode

    def _resolve(self) -> str:
        if self._resolved_mode is None:
            name = self.monitor.lower()
            self._resolved_mode = "max" if any(h in name for h in _MAX_HINTS) else "min"
        return self._resolved_mode

    def get(self, logs: dict[str, Any] | None) -> float | None:
        """Return the monitored value from ``logs``, warning once if missing."""
        logs = logs or {}
        if self.monitor not in logs:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"Metric `{self.monitor}` is not in the logs, so it cannot be monitored. "
                    f"Available keys: {sorted(logs)}.",
                    stacklevel=3,
                )
            return None
        return float(logs[self.monitor])

    def is_improvement(self, value: float, reference: float | None) -> bool:
        """True when ``value`` beats ``reference`` by more than ``min_delta``."""
        if reference is None or not math.isfinite(reference):
            return math.isfinite(value)
        if self._resolve() == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def update(self, logs: dict[str, Any] | None) -> bool | None:
        """Read the metric, update ``best``; True if improved, None if missing."""
        value = self.get(logs)
        if value is None:
            return None
        if self.is_improvement(value, self.best):
            self.best = value
            return True
        return False
