"""The true per-batch loss from Keras' running means, and its smoothed curve.

Keras batch logs hold the mean of the loss since the epoch began (weighted by
batch size in both flavors), not the loss of the batch that just ran. fastai's
and Lightning's LR finders smooth that running mean again, which is one reason
their suggestions lag. With equal batch sizes the batch loss is recovered
exactly from two consecutive means:

    loss_b = ((b + 1) * mean_b - (p + 1) * mean_p) / (b - p)

where ``p`` is the previous batch index seen (``-1`` at an epoch start). With
``steps_per_execution = k`` Keras reports every k-th batch; the formula then
gives the mean loss of those ``k`` batches.
"""

from __future__ import annotations

import math


class BatchLossUnroller:
    """Turns running means into per-batch values (see module docstring).

    Example:
        >>> u = BatchLossUnroller()
        >>> u.reset()
        >>> u.update(0, 4.0), u.update(1, 3.0), u.update(2, 2.0)
        (4.0, 2.0, 0.0)
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start of an epoch."""
        self._prev_index = -1
        self._prev_mean = 0.0

    def update(self, batch: int, running_mean: float) -> float:
        """Return the loss of the batch(es) since the previous call."""
        running_mean = float(running_mean)
        if batch <= self._prev_index:  # a new epoch without reset()
            self.reset()
        if not math.isfinite(running_mean):
            value = running_mean
        else:
            count = batch - self._prev_index
            value = ((batch + 1) * running_mean - (self._prev_index + 1) * self._prev_mean) / count
        self._prev_index = batch
        self._prev_mean = running_mean
        return value


class SmoothedLoss:
    """Bias-corrected exponential moving average of a loss, and its best value.

    fastai's ``SmoothenValue``: ``avg = beta * avg + (1 - beta) * loss``,
    reported as ``avg / (1 - beta ** n)`` after ``n`` values, so that the
    first values are not pulled towards 0. The LR finder and
    `TrainingMonitor` both call a run diverged when the smoothed loss exceeds
    a factor times its best (lowest) value.

    Args:
        beta: Float in [0, 1). Weight of the past.

    Example:
        >>> s = SmoothedLoss(0.5)
        >>> s.update(4.0), s.update(2.0), s.best
        (4.0, 2.666..., 2.666...)
    """

    def __init__(self, beta: float) -> None:
        self.beta = float(beta)
        self.reset()

    def reset(self) -> None:
        """Forget every value seen."""
        self._avg = 0.0
        self.count = 0
        self.best = math.inf

    def update(self, loss: float) -> float:
        """Add a (finite) loss; return the smoothed value."""
        self._avg = self.beta * self._avg + (1 - self.beta) * float(loss)
        self.count += 1
        smoothed = self._avg / (1 - self.beta**self.count)
        self.best = min(self.best, smoothed)
        return smoothed

    def above_best(self, smoothed: float, factor: float) -> bool:
        """Whether ``smoothed`` exceeds ``factor`` times the best value so far."""
        return smoothed > factor * self.best
