"""TFLite (LiteRT) export: every variant, measured — size, latency, accuracy.

`export` converts a Keras model into ``.tflite`` variants (see `VARIANTS`),
writes them atomically with ``manifest.json``, ``report.md`` and a plot, and
measures every number from the files: size, LiteRT latency (`benchmark`),
parity with Keras, ops and quantization details.

Importing this package does not import TensorFlow or Keras (the conversion
worker process, ``python -m keras_opt.tflite._convert``, stays light).

Example:
    >>> from keras_opt.tflite import VARIANTS
    >>> list(VARIANTS)[:6]  # the converter's six (the default)
    ['float32', 'float16', 'dynamic_int8', 'int8', 'int8_only', 'int16x8']
    >>> list(VARIANTS)[6:]  # AI Edge Quantizer's, and int8 with layers kept in float
    ['int4_weights', 'dynamic_int4', 'int8_int16act', 'mixed']
    >>> from keras_opt.tflite import export
    >>> result = export(model, "tflite_models/digits", representative_data=x_cal,
    ...                 eval_data=(x_test, y_test))  # doctest: +SKIP
    >>> result["int8"].metrics  # doctest: +SKIP
    {'accuracy': 0.97}
    >>> result["int8"]["metrics"]  # mapping reads still work  # doctest: +SKIP
    {'accuracy': 0.97}
"""

from keras_opt.tflite._benchmark import LatencyResult, benchmark
from keras_opt.tflite._comparison import write_comparison
from keras_opt.tflite._export import export
from keras_opt.tflite._inspection import inspect_tflite
from keras_opt.tflite._result import ExportResult, VariantResult
from keras_opt.tflite._variants import VARIANTS, Variant

__all__ = [
    "export",
    "ExportResult",
    "VariantResult",
    "benchmark",
    "LatencyResult",
    "inspect_tflite",
    "VARIANTS",
    "Variant",
    "write_comparison",
]
