"""keras_opt: from ``model.fit`` to a phone.

Sub-packages (imported on first use, so ``import keras_opt`` stays cheap):

* `keras_opt.backend` — which Keras flavor is in use (Keras 3 or tf_keras).
* `keras_opt.schedules` — LR schedules, in-graph or via a callback.
* `keras_opt.callbacks` — LR scheduler, LR finder, monitors, NaN guard.
* `keras_opt.diagnostics` — gradient check by finite differences, error
  analysis of a trained classifier.
* `keras_opt.optimization` — pruning, QAT, clustering and their combinations,
  strip, distillation (keras_opt's native engine under Keras 3, TFMOT under
  tf_keras).
* `keras_opt.hardware` — ``tf.distribute`` strategy, mixed precision, XLA,
  input pipeline, batch-size finder, profiler.
* `keras_opt.tflite` — TFLite (LiteRT) variants with measured size, latency and
  accuracy, and their report.
* `keras_opt.tuning` — KerasTuner searches scored on the shipped artifact.
* `keras_opt.cli` — the ``keras-opt`` command (``demo``, ``optimize``,
  ``convert``, ``benchmark``).

Example:
    >>> import keras_opt
    >>> keras_opt.__version__.count(".") >= 2
    True
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "backend",
    "schedules",
    "callbacks",
    "diagnostics",
    "optimization",
    "hardware",
    "tflite",
    "tuning",
    "cli",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_opt.{name}")
    raise AttributeError(f"module 'keras_opt' has no attribute {name!r}")
