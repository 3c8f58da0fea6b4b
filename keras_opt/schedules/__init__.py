"""Learning-rate schedules that work in-graph and as a callback.

Each schedule is a Keras ``LearningRateSchedule``: pass it to an optimizer
(``keras.optimizers.Adam(learning_rate=OneCycle(...))``) for an in-graph
schedule with no per-step Python, or to `keras_opt.callbacks.LRScheduler`
to also cycle momentum, log the LR and scale it on plateaus.

Example:
    >>> from keras_opt.backend import keras
    >>> from keras_opt.schedules import WarmupDecay
    >>> opt = keras.optimizers.Adam(WarmupDecay(1e-3, total_steps=1000, warmup_steps=100))
"""

from keras_opt.schedules._base import Schedule
from keras_opt.schedules.cosine_restarts import CosineRestarts
from keras_opt.schedules.cyclical import CyclicalLR
from keras_opt.schedules.one_cycle import OneCycle
from keras_opt.schedules.warmup_decay import WarmupDecay

__all__ = ["Schedule", "WarmupDecay", "CosineRestarts", "OneCycle", "CyclicalLR"]
