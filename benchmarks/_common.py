"""Shared by the benchmark scripts: epoch timing and writing the result JSON."""

from __future__ import annotations

import json
import os
import time

from keras_opt.backend import keras


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of each epoch in ``self.times`` (seconds)."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def write_result(result: dict, out: str) -> dict:
    """Write ``result`` as JSON to ``out`` (folders created), print it, return it."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return result
