"""Hardware helper: the right ``tf.distribute`` strategy, precision, XLA and batch size.

Move from one CPU to several GPUs, a TPU or several machines with no change to
the training code::

    strategy = keras_opt.hardware.auto_strategy()   # or auto_strategy("mirrored"), ...
    with strategy.scope():
        model = build(); model.compile(...)
    model.fit(keras_opt.hardware.prepare_dataset((x, y), strategy, per_replica_batch_size=64))

The package exports the functions a training script calls. Each lives in a
module named after its concern, which also holds the types it returns and
the lower-level pieces: `devices` (the one place devices are listed,
``Devices``, ``detect_devices``), `strategy` (``check_strategy``,
``is_default_strategy``), `precision` (``resolve_policy``), `xla`, `summary`,
`data`, `input_check` (``InputPipelineReport``), `batch_size`
(``BatchSizeResult``) and `profiling` (``profiler_plugin_available``).

Example:
    >>> from keras_opt import hardware
    >>> hardware.auto_strategy("default").num_replicas_in_sync
    1
"""

from keras_opt.hardware.batch_size import find_batch_size
from keras_opt.hardware.data import global_batch_size, prepare_dataset, scale_learning_rate
from keras_opt.hardware.input_check import check_input_pipeline
from keras_opt.hardware.precision import float32_output, set_precision
from keras_opt.hardware.profiling import profile_steps
from keras_opt.hardware.strategy import auto_strategy
from keras_opt.hardware.summary import setup_summary
from keras_opt.hardware.xla import resolve_jit_compile

__all__ = [
    "auto_strategy",
    "set_precision",
    "float32_output",
    "resolve_jit_compile",
    "setup_summary",
    "prepare_dataset",
    "global_batch_size",
    "scale_learning_rate",
    "find_batch_size",
    "check_input_pipeline",
    "profile_steps",
]
