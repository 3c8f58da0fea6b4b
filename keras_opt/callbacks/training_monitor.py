"""`TrainingMonitor`: speed, the true batch loss, and what is going wrong, as it happens."""

from __future__ import annotations

import logging
import math
import os
import time
from bisect import bisect_left, insort
from collections.abc import Callable
from typing import Any

from keras_opt import _validation as v
from keras_opt._state import read_float
from keras_opt.callbacks import _history_files
from keras_opt.callbacks._base import Callback
from keras_opt.callbacks._batch_loss import BatchLossUnroller, SmoothedLoss
from keras_opt.callbacks._monitor import MonitorState

logger = logging.getLogger(__name__)

__all__ = ["TrainingMonitor"]

#: Keys of the batch logs only (``diverged`` is in both, with the epoch's value there).
_BATCH_ONLY_KEYS = ("batch_loss", "loss_spike")


class TrainingMonitor(Callback):
    """Step time, throughput, the true per-batch loss, and four training alarms.

    Keras' batch logs hold the running mean of the loss since the epoch
    began; the monitor recovers the loss of each batch (exactly, with equal
    batch sizes) and watches it. Each detection is a ``logging`` warning and
    a key in ``logs``:

    * **divergence** (``diverged``, batch and epoch logs): a non-finite batch
      loss, or the smoothed batch loss (bias-corrected moving average,
      factor ``smoothing``) above ``divergence_factor`` times its best value
      (the LR finder's rule). With ``stop_on_divergence`` training stops.
    * **loss spike** (``loss_spike`` in batch logs, ``loss_spikes`` = count in
      epoch logs): a batch loss above ``spike_factor`` times the median of the
      previous ``spike_window`` batch losses (needs 5 of them).
    * **plateau** (``plateau``, epoch logs): ``monitor`` has not improved by
      ``min_delta`` for ``plateau_patience`` epochs.
    * **overfitting** (``overfitting``, epoch logs): ``val_loss`` rose while
      ``loss`` fell, ``overfit_patience`` epochs in a row (needs validation
      data; skipped without it).

    Timing keys in epoch logs: ``epoch_time`` (s), ``step_time`` (mean s per
    step, hooks excluded), ``steps_per_sec`` and, with ``batch_size``,
    ``samples_per_sec``; also ``learning_rate`` (when Keras did not log it and
    the optimizer has a float LR). Batch logs also get ``batch_loss``.
    Everything is kept in ``self.history`` (one dict per epoch),
    ``self.batch_losses`` and ``self.events``; with ``log_dir``,
    ``history.json``, ``history.csv`` and ``training_curves.png`` are written
    there at the end of training.

    Args:
        log_dir: Optional path. Folder for the history files and the PNG.
        monitor: String. Metric for the plateau check.
        mode: String. ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: Float >= 0. Smallest change that counts as improvement.
        plateau_patience: Integer >= 1. Epochs without improvement.
        overfit_patience: Integer >= 1. Epochs of rising ``val_loss`` with
            falling ``loss``.
        divergence_factor: Float > 1. See above.
        spike_factor: Float > 1. See above.
        spike_window: Integer >= 5. See above.
        smoothing: Float in [0, 1). Moving-average factor for divergence.
        batch_size: Optional integer >= 1, for ``samples_per_sec`` (Keras 3
            does not tell callbacks the batch size).
        stop_on_divergence: Boolean. Stop training on divergence.

    Returns:
        A Keras callback of the flavor in use.

    Example:
        >>> from keras_opt.callbacks import TrainingMonitor
        >>> monitor = TrainingMonitor(log_dir="runs/monitor", batch_size=64)
        >>> # model.fit(x, y, batch_size=64, callbacks=[monitor]); monitor.events
    """

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        monitor: str = "loss",
        mode: str = "auto",
        min_delta: float = 1e-4,
        plateau_patience: int = 5,
        overfit_patience: int = 3,
        divergence_factor: float = 4.0,
        spike_factor: float = 3.0,
        spike_window: int = 20,
        smoothing: float = 0.9,
        batch_size: int | None = None,
        stop_on_divergence: bool = False,
    ) -> None:
        super().__init__()
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            v.fail("log_dir", "a path or None", log_dir, exc=TypeError)
        self._state = MonitorState(monitor, mode, min_delta)
        v.integer("plateau_patience", plateau_patience, minimum=1)
        v.integer("overfit_patience", overfit_patience, minimum=1)
        for name, value in (
            ("divergence_factor", divergence_factor),
            ("spike_factor", spike_factor),
        ):
            if v.number(name, value) <= 1.0:  # type: ignore[operator]
                v.fail(name, "> 1", value)
        v.integer("spike_window", spike_window, minimum=5)
        v.in_range("smoothing", smoothing, 0.0, 1.0, high_inclusive=False)
        v.integer("batch_size", batch_size, minimum=1, allow_none=True)
        if not isinstance(stop_on_divergence, bool):
            v.fail("stop_on_divergence", "a bool", stop_on_divergence, exc=TypeError)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.monitor = monitor
        self.mode = mode
        self.min_delta = float(min_delta)
        self.plateau_patience = int(plateau_patience)
        self.overfit_patience = int(overfit_patience)
        self.divergence_factor = float(divergence_factor)
        self.spike_factor = float(spike_factor)
        self.spike_window = int(spike_window)
        self.smoothing = float(smoothing)
        self.batch_size = batch_size
        self.stop_on_divergence = stop_on_divergence
        self._reset()

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments.

        Returns:
            Dict.
        """
        return {
            "log_dir": self.log_dir,
            "monitor": self.monitor,
            "mode": self.mode,
            "min_delta": self.min_delta,
            "plateau_patience": self.plateau_patience,
            "overfit_patience": self.overfit_patience,
            "divergence_factor": self.divergence_factor,
            "spike_factor": self.spike_factor,
            "spike_window": self.spike_window,
            "smoothing": self.smoothing,
            "batch_size": self.batch_size,
            "stop_on_divergence": self.stop_on_divergence,
        }

    def _reset(self) -> None:
        self._state.reset()
        self._unroller = BatchLossUnroller()
        self.history: list[dict[str, Any]] = []
        self.batch_losses: list[list[float]] = []
        self.events: list[dict[str, Any]] = []
        self._recent: list[float] = []  # the last `spike_window` batch losses, in order
        self._recent_sorted: list[float] = []  # the same, sorted (the median in O(1))
        self._ema = SmoothedLoss(self.smoothing)
        self._wait = 0
        self._overfit_streak = 0
        self._prev_epoch_logs: dict[str, float] | None = None
        self._epoch = 0
        self._wrote_fit_logs = False
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        """Per-epoch state: the running-mean unroller, step timing, alarm counts."""
        self._unroller.reset()
        self._prev_batch = -1
        self._prev_mean = 0.0
        self._batch_offset = 0
        self._step_seconds = 0.0
        self._steps = 0
        self._epoch_diverged = False
        self._epoch_spikes = 0
        self._epoch_start = time.perf_counter()
        self._batch_start = self._epoch_start

    # -- hooks -------------------------------------------------------------------

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()
        if self.log_dir is not None:
            os.makedirs(self.log_dir, exist_ok=True)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        self._reset_epoch()
        self.batch_losses.append([])

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        elapsed = time.perf_counter() - self._batch_start
        if not self.batch_losses:  # hooks called without on_epoch_begin
            self.on_epoch_begin(self._epoch)
        steps = max(batch - self._prev_batch, 1)
        self._step_seconds += elapsed
        self._steps += steps
        if logs is None or "loss" not in logs:
            self._prev_batch = batch
            return
        mean = read_float(logs["loss"])
        if not math.isfinite(self._prev_mean) and math.isfinite(mean):
            # Metrics were reset after a non-finite step (e.g. by NaNGuard): the running
            # mean restarts at this batch.
            self._unroller.reset()
            self._batch_offset = batch
        loss = self._unroller.update(batch - self._batch_offset, mean)
        self._prev_batch, self._prev_mean = batch, mean
        self.batch_losses[-1].append(loss)
        logs["batch_loss"] = loss
        logs["diverged"] = float(self._check_divergence(batch, loss))
        logs["loss_spike"] = float(self._check_spike(batch, loss))
        # tf_keras hands over its own batch dict when no callback wants NumPy logs (see
        # `Callback`), and makes the epoch logs from the last one: the batch keys written into
        # it are taken out of the epoch logs again in `on_epoch_end`.
        self._wrote_fit_logs = hasattr(logs["loss"], "numpy")

    def _event(self, kind: str, message: str, **details: Any) -> None:
        event = {"kind": kind, "epoch": self._epoch, **details, "message": message}
        self.events.append(event)
        logger.warning("TrainingMonitor: %s", message)

    def _check_divergence(self, batch: int, loss: float) -> bool:
        if not math.isfinite(loss):
            reason = f"non-finite batch loss ({loss})"
        else:
            smoothed = self._ema.update(loss)
            if not self._ema.above_best(smoothed, self.divergence_factor):
                return False
            reason = (
                f"smoothed loss {smoothed:.4g} > {self.divergence_factor:g} x best "
                f"{self._ema.best:.4g}"
            )
        if not self._epoch_diverged:
            self._event(
                "divergence",
                f"training diverges at epoch {self._epoch}, batch {batch}: {reason}.",
                batch=batch,
                loss=loss,
            )
        self._epoch_diverged = True
        if self.stop_on_divergence and self.model is not None:
            self.model.stop_training = True
        return True

    def _check_spike(self, batch: int, loss: float) -> bool:
        if not math.isfinite(loss):
            return False
        recent, ordered = self._recent, self._recent_sorted
        spike = False
        if len(recent) >= 5:
            half = len(ordered) // 2
            median = ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2
            if median > 0 and loss > self.spike_factor * median:
                spike = True
                self._epoch_spikes += 1
                self._event(
                    "spike",
                    f"loss spike at epoch {self._epoch}, batch {batch}: {loss:.4g} > "
                    f"{self.spike_factor:g} x median {median:.4g} of the last {len(recent)} "
                    "batches.",
                    batch=batch,
                    loss=loss,
                )
        recent.append(loss)
        insort(ordered, loss)
        if len(recent) > self.spike_window:
            del ordered[bisect_left(ordered, recent.pop(0))]
        return spike

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        if self._wrote_fit_logs:
            for key in _BATCH_ONLY_KEYS:
                logs.pop(key, None)
            self._wrote_fit_logs = False
        epoch_time = time.perf_counter() - self._epoch_start
        logs["epoch_time"] = epoch_time
        if self._steps:
            step_time = self._step_seconds / self._steps
            logs["step_time"] = step_time
            logs["steps_per_sec"] = 1.0 / step_time if step_time > 0 else math.inf
            if self.batch_size is not None:
                logs["samples_per_sec"] = logs["steps_per_sec"] * self.batch_size
        lr = self._learning_rate()
        if lr is not None:
            logs.setdefault("learning_rate", lr)
        logs["diverged"] = float(self._epoch_diverged)
        logs["loss_spikes"] = float(self._epoch_spikes)
        logs["plateau"] = float(self._check_plateau(epoch, logs))
        logs["overfitting"] = float(self._check_overfitting(epoch, logs))
        record: dict[str, float] = {"epoch": epoch}
        for key, value in logs.items():
            try:
                record[key] = float(read_float(value))
            except (TypeError, ValueError):
                continue
        self.history.append(record)

    def _learning_rate(self) -> float | None:
        optimizer = getattr(self.model, "optimizer", None) if self.model is not None else None
        lr = getattr(optimizer, "learning_rate", None)
        try:
            return read_float(lr) if lr is not None else None
        except (TypeError, ValueError):
            return None

    def _check_plateau(self, epoch: int, logs: dict) -> bool:
        improved = self._state.update(logs)
        if improved is None:
            return False
        self._wait = 0 if improved else self._wait + 1
        return self._streak(
            "plateau",
            self._wait,
            self.plateau_patience,
            lambda: (
                f"plateau at epoch {epoch}: `{self.monitor}` has not improved by "
                f"{self.min_delta:g} for {self._wait} epochs (best {self._state.best:.4g})."
            ),
        )

    def _check_overfitting(self, epoch: int, logs: dict) -> bool:
        if "val_loss" not in logs or "loss" not in logs:
            return False
        current = {"loss": read_float(logs["loss"]), "val_loss": read_float(logs["val_loss"])}
        prev, self._prev_epoch_logs = self._prev_epoch_logs, current
        if prev is None:
            return False
        if current["val_loss"] > prev["val_loss"] and current["loss"] < prev["loss"]:
            self._overfit_streak += 1
        else:
            self._overfit_streak = 0
        return self._streak(
            "overfitting",
            self._overfit_streak,
            self.overfit_patience,
            lambda: (
                f"overfitting at epoch {epoch}: val_loss rose while loss fell for "
                f"{self._overfit_streak} epochs in a row."
            ),
        )

    def _streak(self, kind: str, count: int, patience: int, message: Callable[[], str]) -> bool:
        """True from ``patience`` epochs on; the event is raised on reaching it, once."""
        if count < patience:
            return False
        if count == patience:
            self._event(kind, message(), epochs=count)
        return True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.log_dir is None:
            return
        _history_files.write_all(self.log_dir, self.history, self.events, self.batch_losses)
