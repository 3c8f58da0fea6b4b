"""Model compression: pruning, quantization-aware training, clustering, distillation.

Pruning, QAT and clustering wrap TFMOT 0.8.1, which only accepts tf_keras
models: run with ``TF_USE_LEGACY_KERAS=1`` set before TensorFlow is imported.
Under Keras 3 those functions raise one `keras_opt.backend.FlavorError` saying
so. `summary` and `Distiller` work in both flavors.

Example:
    >>> import keras_opt.optimization as kopt
    >>> sorted(kopt.__all__)[:3]
    ['Distiller', 'callbacks', 'check']
"""

from __future__ import annotations

from keras_opt.optimization.clustering import cluster
from keras_opt.optimization.collaborative import collaborative
from keras_opt.optimization.distillation import Distiller
from keras_opt.optimization.pruning import prune
from keras_opt.optimization.pruning_callbacks import callbacks
from keras_opt.optimization.quantization import check, quantize
from keras_opt.optimization.strip import strip
from keras_opt.optimization.summary import summary

__all__ = [
    "prune",
    "callbacks",
    "quantize",
    "check",
    "cluster",
    "collaborative",
    "strip",
    "summary",
    "Distiller",
]
