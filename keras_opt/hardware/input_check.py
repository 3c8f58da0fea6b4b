"""Is training waiting for data? Compare the dataset's throughput with the step's.

The tf.data performance guide's method: time the input pipeline alone
(iterate the dataset, no model), then time the training step alone (the same
batches, already in memory). With prefetching the two overlap, so training
runs at the slower of the two rates; when the dataset is slower, the
accelerator waits for input and the fix is in the pipeline (``cache``,
``map(num_parallel_calls=AUTOTUNE)``, ``interleave``, ``prefetch``), not in
the model.

Example:
    >>> from keras_opt.hardware.input_check import InputPipelineReport
    >>> r = InputPipelineReport(data_batches_per_second=10.0, train_steps_per_second=50.0,
    ...                         steps=5)
    >>> r.input_bound
    True
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import tensorflow as tf

from keras_opt import _validation as v
from keras_opt import backend
from keras_opt._state import ModelSnapshot

logger = logging.getLogger(__name__)

__all__ = ["InputPipelineReport", "check_input_pipeline"]


@dataclasses.dataclass(frozen=True)
class InputPipelineReport:
    """Measured throughput of the input pipeline and of the training step.

    Attributes:
        data_batches_per_second: Float. Batches/s the dataset alone delivers.
        train_steps_per_second: Float. Steps/s the model trains on in-memory batches.
        steps: Integer. Batches timed for each measurement.

    Example:
        >>> from keras_opt.hardware.input_check import InputPipelineReport
        >>> InputPipelineReport(100.0, 20.0, steps=5).input_bound
        False
    """

    data_batches_per_second: float
    train_steps_per_second: float
    steps: int

    @property
    def input_bound(self) -> bool:
        """True when the dataset delivers fewer batches per second than training consumes."""
        return self.data_batches_per_second < self.train_steps_per_second

    @property
    def ratio(self) -> float:
        """Dataset rate / training rate (< 1 means input-bound)."""
        return self.data_batches_per_second / max(self.train_steps_per_second, 1e-12)

    @property
    def verdict(self) -> str:
        """One sentence saying which side limits training, with the fix."""
        rates = (
            f"the input pipeline delivers {self.data_batches_per_second:.1f} batches/s, "
            f"the training step runs at {self.train_steps_per_second:.1f} steps/s"
        )
        if self.input_bound:
            idle = 100.0 * (1.0 - self.ratio)
            return (
                f"Input-bound: {rates}, so the device waits for data about {idle:.0f}% of the "
                "time. Speed up the pipeline (tf.data guide): cache() after decoding, "
                "map(..., num_parallel_calls=tf.data.AUTOTUNE), interleave file reads, "
                "prefetch(tf.data.AUTOTUNE)."
            )
        return (
            f"Not input-bound: {rates} ({self.ratio:.1f}x headroom). The step itself is the "
            "bottleneck: look at the model, mixed precision, XLA or the batch size."
        )


def _timed_iteration(dataset: tf.data.Dataset, warmup: int, steps: int) -> tuple[list, float]:
    iterator = iter(dataset)
    batches = []
    for _ in range(warmup):
        batches.append(next(iterator))
    start = time.perf_counter()
    for _ in range(steps):
        batches.append(next(iterator))
    return batches, time.perf_counter() - start


def check_input_pipeline(
    model: Any, dataset: tf.data.Dataset, steps: int = 10, warmup: int = 2
) -> InputPipelineReport:
    """Measure whether training ``model`` on ``dataset`` would be input-bound.

    Runs ``warmup + steps`` real training steps (``train_on_batch``) and then
    restores the model's weights and optimizer state.

    Args:
        model: A compiled Keras model of the flavor in use.
        dataset: A batched ``tf.data.Dataset`` yielding ``(x, y)`` (or ``(x, y, w)``)
            with at least ``warmup + steps`` batches (repeat it if needed).
        steps: Integer >= 1. Batches timed in each measurement.
        warmup: Integer >= 1. Untimed batches first (tracing, filling buffers).

    Returns:
        An `InputPipelineReport` (``.input_bound``, ``.verdict``).

    Raises:
        TypeError: if ``model`` or ``dataset`` has the wrong type.
        ValueError: if the dataset has fewer than ``warmup + steps`` batches.

    Example:
        >>> report = check_input_pipeline(model, dataset)  # doctest: +SKIP
        >>> report.verdict  # doctest: +SKIP
        'Input-bound: the input pipeline delivers 18.9 batches/s, ...'
    """
    backend.check_model(model)
    if not isinstance(dataset, tf.data.Dataset):
        v.fail("dataset", "a batched tf.data.Dataset", type(dataset), exc=TypeError)
    v.integer("steps", steps, minimum=1)
    v.integer("warmup", warmup, minimum=1)
    try:
        batches, data_seconds = _timed_iteration(dataset, warmup, steps)
    except StopIteration:
        v.fail(
            "dataset",
            f"at least warmup + steps = {warmup + steps} batches long",
            dataset,
            hint="Use `dataset.repeat()` or lower `steps`",
        )
    state = ModelSnapshot.take(model)
    try:
        for batch in batches[:warmup]:
            model.train_on_batch(*backend.keras.utils.unpack_x_y_sample_weight(batch))
        start = time.perf_counter()
        for batch in batches[warmup:]:
            model.train_on_batch(*backend.keras.utils.unpack_x_y_sample_weight(batch))
        train_seconds = time.perf_counter() - start
    finally:
        state.restore()
    report = InputPipelineReport(
        data_batches_per_second=steps / max(data_seconds, 1e-9),
        train_steps_per_second=steps / max(train_seconds, 1e-9),
        steps=steps,
    )
    logger.info("check_input_pipeline: %s", report.verdict)
    return report
