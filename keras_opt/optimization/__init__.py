"""Model compression: pruning, quantization-aware training, clustering, distillation.

One API, two engines, chosen by the Keras flavor in use:

* Keras 3 (the default): keras_opt's native engine. Compressed layers carry
  their plan (masks, step counter, schedule, centroids, quantization ranges)
  as variables and config, and do all per-step work inside the train step, so
  ``fit`` and ``tuner.search`` need no callback.
* tf_keras (``TF_USE_LEGACY_KERAS=1``): TFMOT 0.8.1; a pruned model's ``fit``
  needs ``callbacks=keras_opt.optimization.callbacks(model)`` (keras_opt's
  tuners and `collaborative` add it).

`strip` turns either engine's model into built-in Keras layers;
`compression_summary` reads what compression did from the weights and
`compression_of` says which compression a model carries; `Distiller` works in
both. ``check`` and ``summary`` are deprecated aliases of `check_quantizable`
and `compression_summary`.

Example:
    >>> import keras_opt.optimization as kopt
    >>> sorted(kopt.__all__)[:3]
    ['Distiller', 'callbacks', 'check_quantizable']
"""

from __future__ import annotations

from keras_opt.optimization._collaborative import collaborative
from keras_opt.optimization._engine import compression_of
from keras_opt.optimization._strip import strip
from keras_opt.optimization._summary import compression_summary
from keras_opt.optimization.clustering import cluster
from keras_opt.optimization.distillation import Distiller
from keras_opt.optimization.pruning import prune
from keras_opt.optimization.pruning_callbacks import callbacks
from keras_opt.optimization.quantization import check_quantizable, quantize

check = check_quantizable
"""Deprecated alias of `check_quantizable` (the name the README used first)."""
summary = compression_summary
"""Deprecated alias of `compression_summary` (the name the README used first)."""

__all__ = [
    "prune",
    "cluster",
    "quantize",
    "check_quantizable",
    "collaborative",
    "strip",
    "compression_summary",
    "compression_of",
    "callbacks",
    "Distiller",
]
