"""Find the largest per-replica batch that fits in device memory.

Modelled on PyTorch Lightning's ``BatchSizeFinder``: start small, double the
batch (``mode="power"``) until a step runs out of memory, optionally refine
between the last size that fit and the first that did not (``"binsearch"``).
Out-of-memory errors (``tf.errors.ResourceExhaustedError``, or an XLA/cuDNN
``InternalError`` saying "out of memory") are caught, memory is garbage
collected, and the search goes on; any other error propagates. Each size that
fits is timed, so the result also shows the throughput per size, and the
linear LR-scaling rule (`keras_opt.hardware.scale_learning_rate`) gives the
learning rate the chosen batch implies. The model's weights and optimizer
state are restored afterwards.

Example:
    >>> from keras_opt.hardware.batch_size import BatchSizeResult, BatchSizeTrial
    >>> r = BatchSizeResult([BatchSizeTrial(8, 8, True, 100.0), BatchSizeTrial(16, 16, False)],
    ...                     replicas=1, base_batch_size=8, base_learning_rate=0.01)
    >>> r.per_replica_batch_size, r.suggested_learning_rate
    (8, 0.01)
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt import _validation as v
from keras_opt import backend
from keras_opt._state import ModelSnapshot, read_float
from keras_opt.hardware.data import scale_learning_rate

logger = logging.getLogger(__name__)

__all__ = ["BatchSizeTrial", "BatchSizeResult", "find_batch_size"]


@dataclasses.dataclass(frozen=True)
class BatchSizeTrial:
    """One size tried.

    Attributes:
        per_replica_batch_size: Integer.
        global_batch_size: Integer.
        fits: Boolean. False when the step ran out of memory.
        samples_per_second: Float or None (None when it did not fit).
    """

    per_replica_batch_size: int
    global_batch_size: int
    fits: bool
    samples_per_second: float | None = None


@dataclasses.dataclass(frozen=True)
class BatchSizeResult:
    """The outcome of `find_batch_size`.

    Attributes:
        trials: List of `BatchSizeTrial`, in the order tried.
        replicas: Integer. Replicas of the strategy the model was built under.
        base_batch_size: Integer. Global batch the base LR refers to.
        base_learning_rate: Float or None. The optimizer's LR before the search.
    """

    trials: list[BatchSizeTrial]
    replicas: int
    base_batch_size: int
    base_learning_rate: float | None

    @property
    def per_replica_batch_size(self) -> int | None:
        """Largest per-replica batch that fit (None if none did)."""
        sizes = [t.per_replica_batch_size for t in self.trials if t.fits]
        return max(sizes) if sizes else None

    @property
    def global_batch_size(self) -> int | None:
        """``per_replica_batch_size × replicas``."""
        size = self.per_replica_batch_size
        return None if size is None else size * self.replicas

    @property
    def fastest_per_replica_batch_size(self) -> int | None:
        """The size with the highest measured throughput (samples/s)."""
        fits = [t for t in self.trials if t.fits and t.samples_per_second]
        if not fits:
            return None
        return max(fits, key=lambda t: t.samples_per_second or 0.0).per_replica_batch_size

    @property
    def learning_rate_scale(self) -> float | None:
        """``global_batch_size / base_batch_size`` (the linear rule's factor)."""
        size = self.global_batch_size
        return None if size is None else size / self.base_batch_size

    @property
    def suggested_learning_rate(self) -> float | None:
        """Base LR scaled by the linear rule to the chosen global batch."""
        if self.global_batch_size is None or self.base_learning_rate is None:
            return None
        return scale_learning_rate(
            self.base_learning_rate, self.global_batch_size, self.base_batch_size
        )


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, tf.errors.ResourceExhaustedError):
        return True
    text = str(err).lower()
    return isinstance(err, (tf.errors.InternalError, RuntimeError)) and "out of memory" in text


def _learning_rate(model: Any) -> float | None:
    try:
        return read_float(model.optimizer.learning_rate)
    except (AttributeError, TypeError, ValueError):
        return None


def _try_size(model: Any, x: Any, y: Any, size: int, steps: int) -> float | None:
    """Samples/s at global batch ``size``, or None when it runs out of memory."""
    n = len(x)
    idx = np.arange(size) % n
    xb, yb = x[idx], (None if y is None else y[idx])
    try:
        model.train_on_batch(xb, yb)  # traces for the new shape
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(xb, yb)
        return size * steps / max(time.perf_counter() - start, 1e-9)
    except Exception as err:  # noqa: BLE001 - re-raised below unless it is an OOM
        if not _is_oom(err):
            raise
        logger.info("find_batch_size: global batch %d ran out of memory.", size)
        del xb, yb
        gc.collect()
        return None


def find_batch_size(
    model: Any,
    x: Any,
    y: Any = None,
    init_batch_size: int = 8,
    max_batch_size: int | None = None,
    mode: str = "power",
    steps: int = 2,
    max_trials: int = 12,
    base_batch_size: int | None = None,
) -> BatchSizeResult:
    """Find the largest per-replica batch that trains without running out of memory.

    Args:
        model: A compiled Keras model (built under the strategy it will train with).
        x: Array of inputs (samples along axis 0); batches larger than ``len(x)``
            repeat samples.
        y: Array of targets or None.
        init_batch_size: Integer >= 1. First per-replica batch tried.
        max_batch_size: Integer or None. Largest per-replica batch tried.
        mode: ``"power"`` (double until out of memory) or ``"binsearch"``
            (then bisect between the last fit and the first failure).
        steps: Integer >= 1. Timed steps per size (after one untimed step).
        max_trials: Integer >= 1. Most sizes tried.
        base_batch_size: Integer or None. Global batch the optimizer's current LR
            was tuned for; None takes the first global batch tried.

    Returns:
        A `BatchSizeResult` (``.per_replica_batch_size``, ``.trials``,
        ``.suggested_learning_rate``).

    Raises:
        TypeError: if ``model`` is not a Keras model of the flavor in use.
        ValueError: on bad sizes or mode.

    Example:
        >>> result = find_batch_size(model, x_train, y_train)  # doctest: +SKIP
        >>> result.per_replica_batch_size, result.suggested_learning_rate  # doctest: +SKIP
        (512, 0.064)
    """
    backend.check_model(model)
    v.integer("init_batch_size", init_batch_size, minimum=1)
    v.integer("max_batch_size", max_batch_size, minimum=init_batch_size, allow_none=True)
    v.one_of("mode", mode, ("power", "binsearch"))
    v.integer("steps", steps, minimum=1)
    v.integer("max_trials", max_trials, minimum=1)
    v.integer("base_batch_size", base_batch_size, minimum=1, allow_none=True)
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        v.fail("x", "an array with at least one sample", x.shape)
    y = None if y is None else np.asarray(y)
    if y is not None and len(y) != len(x):
        v.fail("y", f"as long as x ({len(x)} samples)", y.shape)
    replicas = int(model.distribute_strategy.num_replicas_in_sync)
    trials: list[BatchSizeTrial] = []
    base_lr = _learning_rate(model)
    state = ModelSnapshot.take(model)
    low, high = 0, None  # largest size that fit, smallest that did not
    size = init_batch_size
    try:
        while len(trials) < max_trials:
            rate = _try_size(model, x, y, size * replicas, steps)
            trials.append(BatchSizeTrial(size, size * replicas, rate is not None, rate))
            logger.info("find_batch_size: per-replica %d -> %s", size, rate or "out of memory")
            if rate is not None:
                low = size
            else:
                high = size
            if high is None:
                if max_batch_size is not None and size >= max_batch_size:
                    break
                size = size * 2 if max_batch_size is None else min(size * 2, max_batch_size)
            elif mode == "binsearch" and high - low > 1 and low > 0:
                size = (low + high) // 2
            else:
                break
    finally:
        state.restore()
    result = BatchSizeResult(
        trials, replicas, base_batch_size or init_batch_size * replicas, base_lr
    )
    if result.per_replica_batch_size is None:
        logger.warning(
            "find_batch_size: even per-replica batch %d ran out of memory.", init_batch_size
        )
    return result
