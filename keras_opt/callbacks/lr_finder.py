"""The LR range test: `find_lr` and the `LRFinder` callback behind it.

Anchors: fastai ``lr_find`` and Lightning ``LearningRateFinder``. Differences:
the loss recorded is the true per-batch loss (Keras logs a running mean), the
model's weights *and* optimizer state are restored bit for bit afterwards, and
all three usual suggestion rules are returned together.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Any

import tensorflow as tf

from keras_opt import _validation as v
from keras_opt._plotting import new_figure, save_figure
from keras_opt._state import ModelSnapshot, read_float
from keras_opt.backend import check_model
from keras_opt.callbacks._base import Callback
from keras_opt.callbacks._batch_loss import BatchLossUnroller, SmoothedLoss
from keras_opt.callbacks._lr_suggestions import RULES, suggest
from keras_opt.callbacks._optimizer_state import (
    build_optimizer,
    learning_rate_variable,
    release_schedule,
)

logger = logging.getLogger(__name__)

__all__ = ["LRFinder", "LRFinderResult", "find_lr"]


@dataclasses.dataclass
class LRFinderResult:
    """What an LR range test measured.

    Attributes:
        lrs: List of floats. LR used at each step.
        losses: List of floats. True loss of each step's batch.
        smoothed_losses: List of floats. Bias-corrected exponential moving
            average of ``losses`` (fastai's smoothing).
        suggestions: Dict rule -> LR, for ``"valley"``, ``"steepest"`` and
            ``"minimum"`` (the LR of the lowest smoothed loss divided by 10).
        rule: String. The rule behind `suggested_lr`.
        suggested_lr: Float. ``suggestions[rule]``.
        diverged: Boolean. Whether the sweep stopped early on divergence.

    Example:
        >>> r = LRFinderResult([1e-3, 1e-2], [1.0, 0.5], [1.0, 0.7],
        ...                    {"minimum": 1e-3}, "minimum", 1e-3, False)
        >>> r.suggested_lr
        0.001
    """

    lrs: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggestions: dict[str, float]
    rule: str
    suggested_lr: float
    diverged: bool

    def plot(self, path: str | os.PathLike) -> str:
        """Save the (LR, smoothed loss) curve with the suggestion marked, as PNG.

        Args:
            path: String or path. Where to write the PNG.

        Returns:
            The path written, as a string.
        """
        fig = new_figure((6, 4))
        ax = fig.subplots()
        ax.plot(self.lrs, self.smoothed_losses, label="smoothed loss")
        ax.plot(self.lrs, self.losses, alpha=0.3, label="batch loss")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = [x for x in self.smoothed_losses if math.isfinite(x)]
        if finite:
            low = min(finite)
            high = max(finite[: finite.index(low) + 1])  # the curve up to its minimum
            pad = 0.1 * (high - low) + 1e-12
            ax.set_ylim(low - pad, high + pad)
        for rule, lr in self.suggestions.items():
            style = "-" if rule == self.rule else ":"
            ax.axvline(lr, linestyle=style, color="red" if rule == self.rule else "gray")
        ax.set_title(f"LR finder: {self.rule} suggests {self.suggested_lr:.2e}")
        ax.legend()
        fig.tight_layout()
        return save_figure(fig, path)


class LRFinder(Callback):
    """Callback that sweeps the LR exponentially and records the true batch loss.

    Usually used through `find_lr`. Used directly, run it in a ``fit`` of at
    least ``num_steps`` batches; it stops training at the end of the sweep,
    restores the weights and optimizer state, and stores the result in
    ``self.result``.

    Args:
        start_lr: Float > 0. First LR.
        end_lr: Float > ``start_lr``. Last LR.
        num_steps: Integer >= 5. Steps of the sweep.
        beta: Float in [0, 1). Smoothing of the loss curve.
        diverge_threshold: Float > 1. Stop when the smoothed loss exceeds
            this many times its minimum.
        rule: String. ``"valley"`` (fastai's default), ``"steepest"`` or
            ``"minimum"``.
        restore: Boolean. Restore weights and optimizer state at the end.

    Returns:
        A Keras callback of the flavor in use.

    Example:
        >>> from keras_opt.callbacks import LRFinder
        >>> finder = LRFinder(start_lr=1e-6, end_lr=1.0, num_steps=50)
        >>> # model.fit(x, y, epochs=1, steps_per_epoch=50, callbacks=[finder])
        >>> # finder.result.suggested_lr
    """

    def __init__(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_steps: int = 100,
        beta: float = 0.98,
        diverge_threshold: float = 4.0,
        rule: str = "valley",
        restore: bool = True,
    ) -> None:
        super().__init__()
        v.positive("start_lr", start_lr)
        v.positive("end_lr", end_lr)
        if end_lr <= start_lr:
            v.fail("end_lr", f"> start_lr={start_lr}", end_lr)
        v.integer("num_steps", num_steps, minimum=5)
        v.in_range("beta", beta, 0.0, 1.0, high_inclusive=False)
        if v.number("diverge_threshold", diverge_threshold) <= 1.0:  # type: ignore[operator]
            v.fail("diverge_threshold", "> 1", diverge_threshold)
        v.one_of("rule", rule, RULES)
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)
        self.num_steps = int(num_steps)
        self.beta = float(beta)
        self.diverge_threshold = float(diverge_threshold)
        self.rule = rule
        self.restore = bool(restore)
        self.result: LRFinderResult | None = None

    def lr_for_step(self, i: int) -> float:
        """LR of sweep step ``i``: ``start * (end / start) ** (i / (num_steps - 1))``.

        Args:
            i: Integer. Step of the sweep.

        Returns:
            Float.
        """
        return self.start_lr * (self.end_lr / self.start_lr) ** (i / (self.num_steps - 1))

    def on_train_begin(self, logs: dict | None = None) -> None:
        release_schedule(self.model.optimizer)
        self._lr_var = learning_rate_variable(self.model.optimizer, "LRFinder")
        _ensure_built(self.model)
        self._snapshot = ModelSnapshot.take(self.model)
        self._unroller = BatchLossUnroller()
        self._ema = SmoothedLoss(self.beta)
        self._step = 0
        self._lrs: list[float] = []
        self._losses: list[float] = []
        self._smoothed: list[float] = []
        self._diverged = False
        self.result = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._unroller.reset()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._current_lr = self.lr_for_step(min(self._step, self.num_steps - 1))
        self._lr_var.assign(self._current_lr)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not logs or "loss" not in logs:
            raise ValueError(
                "LRFinder needs the training loss in the batch logs, but it is missing. "
                "Compile the model with a loss."
            )
        loss = self._unroller.update(batch, read_float(logs["loss"]))
        self._step += 1
        self._lrs.append(self._current_lr)
        self._losses.append(loss)
        if not math.isfinite(loss):
            self._smoothed.append(math.inf)
            self._diverged = True
            self.model.stop_training = True
            return
        smoothed = self._ema.update(loss)
        self._smoothed.append(smoothed)
        if self._step > 1 and self._ema.above_best(smoothed, self.diverge_threshold):
            self._diverged = True
            self.model.stop_training = True
        if self._step >= self.num_steps:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.restore:
            self._snapshot.restore()
        suggestions = suggest(self._lrs, self._smoothed)
        self.result = LRFinderResult(
            lrs=self._lrs,
            losses=self._losses,
            smoothed_losses=self._smoothed,
            suggestions=suggestions,
            rule=self.rule,
            suggested_lr=suggestions[self.rule],
            diverged=self._diverged,
        )


def _ensure_built(model: Any, sample: Any = None) -> None:
    if not model.built:
        if sample is None:
            raise ValueError(
                "LRFinder needs a built model to snapshot its weights. Build it first "
                "(start it with `keras.Input(...)`, or call it once on a batch), or use "
                "`keras_opt.callbacks.find_lr`, which builds it."
            )
        model(sample, training=False)
    build_optimizer(model)


def _dataset(x: Any, y: Any, batch_size: int, sample_weight: Any, seed: int) -> tf.data.Dataset:
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError(
                "When `x` is a tf.data.Dataset it must yield (inputs, targets); do not pass "
                f"`y`. Received: y={type(y).__name__}"
            )
        return x.repeat()
    if y is None:
        raise ValueError("Argument `y` is required when `x` is an array. Received: y=None")
    parts = (x, y) if sample_weight is None else (x, y, sample_weight)
    first = tf.nest.flatten(x)[0]
    n = len(first)
    for name, value in (("y", y), ("sample_weight", sample_weight)):
        if value is not None and len(tf.nest.flatten(value)[0]) != n:
            v.fail(
                name,
                f"as long as `x` ({n} samples)",
                f"{len(tf.nest.flatten(value)[0])} samples",
            )
    if n < batch_size:
        v.fail("batch_size", f"<= the number of samples ({n})", batch_size)
    ds = tf.data.Dataset.from_tensor_slices(parts)
    return ds.shuffle(n, seed=seed).repeat().batch(batch_size, drop_remainder=True)


def find_lr(
    model: Any,
    x: Any,
    y: Any = None,
    *,
    batch_size: int = 32,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    rule: str = "valley",
    beta: float = 0.98,
    diverge_threshold: float = 4.0,
    sample_weight: Any = None,
    plot: str | os.PathLike | None = None,
    seed: int = 0,
    verbose: int = 0,
) -> LRFinderResult:
    """Run an LR range test on a compiled model and suggest a learning rate.

    The LR grows exponentially from ``start_lr`` to ``end_lr`` over
    ``num_steps`` batches; the true per-batch loss is recorded; the sweep stops
    early when the smoothed loss exceeds ``diverge_threshold`` times its best.
    Afterwards the model's weights, the optimizer's state and its LR are
    exactly what they were before (an unbuilt optimizer is built first).

    Args:
        model: Compiled Keras model (optimizer with a float learning rate).
        x: Inputs (array, list/dict of arrays) or a batched ``tf.data.Dataset``
            yielding ``(inputs, targets)``; it is repeated as needed.
        y: Targets, when ``x`` is not a dataset.
        batch_size: Integer. Batch size for array inputs.
        start_lr: Float > 0. First LR.
        end_lr: Float > ``start_lr``. Last LR.
        num_steps: Integer >= 5. Batches in the sweep.
        rule: String. Suggestion rule: ``"valley"``, ``"steepest"``, ``"minimum"``.
        beta: Float. Smoothing factor of the loss curve.
        diverge_threshold: Float > 1. Early-stop factor.
        sample_weight: Optional per-sample weights for array inputs.
        plot: Path or None. Where to save the curve as PNG.
        seed: Integer. Shuffle seed for array inputs.
        verbose: Integer. Passed to ``fit``.

    Returns:
        `LRFinderResult` with the curve and the suggestions.

    Raises:
        TypeError: if ``model`` is not a Keras model of the flavor in use, or
            its optimizer holds a schedule object.
        ValueError: if the model is not compiled, or on bad arguments.

    Example:
        >>> import numpy as np
        >>> from keras_opt.backend import keras
        >>> from keras_opt.callbacks import find_lr
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        >>> x = np.random.rand(256, 4).astype("float32"); y = x.sum(1)
        >>> result = find_lr(model, x, y, num_steps=30, end_lr=1.0)
        >>> 1e-7 <= result.suggested_lr <= 1.0
        True
    """
    check_model(model)
    if getattr(model, "optimizer", None) is None or not getattr(model, "_is_compiled", True):
        raise ValueError(
            "find_lr needs a compiled model. Call `model.compile(optimizer=..., loss=...)` first."
        )
    v.integer("batch_size", batch_size, minimum=1)
    v.integer("seed", seed)
    finder = LRFinder(
        start_lr=start_lr,
        end_lr=end_lr,
        num_steps=num_steps,
        beta=beta,
        diverge_threshold=diverge_threshold,
        rule=rule,
    )
    release_schedule(model.optimizer)
    learning_rate_variable(model.optimizer, "find_lr")
    ds = _dataset(x, y, batch_size, sample_weight, seed)
    sample = next(iter(ds.take(1)))[0]
    _ensure_built(model, sample)
    model.fit(
        ds,
        epochs=1,
        steps_per_epoch=num_steps,
        callbacks=[finder],
        verbose=verbose,
        shuffle=False,
    )
    result = finder.result
    assert result is not None  # set by on_train_end
    if plot is not None:
        result.plot(plot)
    logger.info("LR finder: %s rule suggests %.3g", result.rule, result.suggested_lr)
    return result
