"""The callbacks a TFMOT-pruned model needs while it trains (tf_keras only).

TFMOT's pruning wrapper counts steps only when its ``UpdatePruningStep``
callback runs. keras_opt's `PruningStep` extends it: when the fit starts, it
fits each layer's `FitRelativeSchedule` to that fit's epochs and steps. The
resolved steps are written into the schedule, so they are part of the layer's
config from then on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from keras_opt.optimization import _plan
from keras_opt.optimization._graph import iter_layers
from keras_opt.optimization._tfmot import FitRelativeSchedule

_keras_tb = tfmot.sparsity.keras.PruningSummaries.__mro__[1]


class PruningStep(tfmot.sparsity.keras.UpdatePruningStep):
    """TFMOT's UpdatePruningStep that first fits keras_opt schedules to this fit."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        resolved = False
        for layer in self.prunable_layers:
            schedule = layer.pruning_schedule
            if isinstance(schedule, FitRelativeSchedule) and schedule.steps is None:
                start = int(np.asarray(layer.pruning_step.numpy())) + 1
                schedule.steps = _plan.resolve(
                    schedule.plan, start, self.params.get("epochs"), self.params.get("steps")
                )
                resolved = True
        if resolved:
            # The schedule's steps are Python numbers baked into the graph.
            self.model.train_function = self.model.make_train_function(force=True)


class PruningSummaries(tfmot.sparsity.keras.PruningSummaries):
    """TFMOT's PruningSummaries, opening its writer in on_train_begin."""

    def __init__(self, log_dir: str, update_freq: str | int = "epoch") -> None:
        _keras_tb.__init__(self, log_dir=log_dir, update_freq=update_freq)
        self._file_writer = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self._file_writer is None:
            self._file_writer = tf.summary.create_file_writer(self.log_dir + "/metrics")


def has_pruning(model: Any) -> bool:
    """True when ``model`` carries TFMOT pruning wrappers."""
    return any(type(layer).__name__ == "PruneLowMagnitude" for layer in iter_layers(model))


def pruning_callbacks(model: Any, log_dir: str | None) -> list:
    """`PruningStep` (and `PruningSummaries` with ``log_dir``) for a pruned model, else []."""
    if not has_pruning(model):
        return []
    out: list = [PruningStep()]
    if log_dir is not None:
        out.append(PruningSummaries(log_dir))
    return out
