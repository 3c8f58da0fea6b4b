"""Shared by the benchmark scripts: epoch timing and writing the result JSON."""

from __future__ import annotations

import json
import os
import time

from keras_opt.backend import keras


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall time (``times``) and process CPU time (``cpu_times``).

    CPU time (all threads of this process) is far less sensitive than wall time
    to other load on a shared machine, so it resolves overheads of a few percent.
    """

    def on_train_begin(self, logs=None):
        self.times, self.cpu_times = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._t, self._c = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)
        self.cpu_times.append(time.process_time() - self._c)


def write_result(result: dict, out: str) -> dict:
    """Write ``result`` as JSON to ``out`` (folders created), print it, return it."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return result
