"""Callbacks for ``model.fit``: LR scheduling, the LR finder, monitors, NaN guard.

Every callback subclasses the ``Callback`` of the Keras flavor in use (see
`keras_opt.backend`), so it sits next to Keras' own callbacks.

Example:
    >>> from keras_opt.callbacks import LRScheduler
    >>> from keras_opt.schedules import OneCycle
    >>> callbacks = [LRScheduler(OneCycle(max_lr=1e-2))]
"""

from keras_opt.callbacks.activation_monitor import ActivationMonitor
from keras_opt.callbacks.gradient_monitor import GradientMonitor
from keras_opt.callbacks.lr_finder import LRFinder, LRFinderResult, find_lr
from keras_opt.callbacks.lr_scheduler import LRScheduler, Plateau
from keras_opt.callbacks.nan_guard import NaNGuard
from keras_opt.callbacks.training_monitor import TrainingMonitor

__all__ = [
    "LRScheduler",
    "Plateau",
    "LRFinder",
    "LRFinderResult",
    "find_lr",
    "TrainingMonitor",
    "GradientMonitor",
    "ActivationMonitor",
    "NaNGuard",
]
