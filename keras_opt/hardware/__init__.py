"""Hardware helper: the right ``tf.distribute`` strategy, precision, XLA and batch size.

Move from one CPU to several GPUs, a TPU or several machines with no change to
the training code::

    strategy = keras_opt.hardware.auto_strategy()   # or auto_strategy("mirrored"), ...
    with strategy.scope():
        model = build(); model.compile(...)
    model.fit(keras_opt.hardware.prepare_dataset((x, y), strategy, per_replica_batch_size=64))

Modules: `devices` (the one place devices are listed), `strategy`,
`precision`, `xla`, `data`, `input_check`, `batch_size`, `profiling`.

Example:
    >>> from keras_opt import hardware
    >>> hardware.auto_strategy("default").num_replicas_in_sync
    1
"""

from keras_opt.hardware.batch_size import BatchSizeResult, BatchSizeTrial, find_batch_size
from keras_opt.hardware.data import global_batch_size, prepare_dataset, scale_learning_rate
from keras_opt.hardware.devices import Devices, detect_devices
from keras_opt.hardware.input_check import InputPipelineReport, check_input_pipeline
from keras_opt.hardware.precision import float32_output, resolve_policy, set_precision
from keras_opt.hardware.profiling import profile_steps, profiler_plugin_available
from keras_opt.hardware.strategy import auto_strategy, check_strategy, is_default_strategy
from keras_opt.hardware.xla import resolve_jit_compile, setup_summary

__all__ = [
    "auto_strategy",
    "check_strategy",
    "is_default_strategy",
    "Devices",
    "detect_devices",
    "resolve_policy",
    "set_precision",
    "float32_output",
    "resolve_jit_compile",
    "setup_summary",
    "global_batch_size",
    "scale_learning_rate",
    "prepare_dataset",
    "check_input_pipeline",
    "InputPipelineReport",
    "find_batch_size",
    "BatchSizeResult",
    "BatchSizeTrial",
    "profile_steps",
    "profiler_plugin_available",
]
