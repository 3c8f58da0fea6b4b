"""`setup_summary`: the training setup (devices, strategy, precision, XLA) in one line.

Example:
    >>> from keras_opt.hardware import setup_summary
    >>> setup_summary().startswith("devices: ")
    True
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_opt import _validation as v
from keras_opt.backend import keras
from keras_opt.hardware import devices as _devices
from keras_opt.hardware.strategy import is_default_strategy
from keras_opt.hardware.xla import resolve_jit_compile

__all__ = ["setup_summary"]


def setup_summary(
    strategy: Any = None,
    policy: str | None = None,
    jit_compile: bool | None = None,
    devices: _devices.Devices | None = None,
) -> str:
    """One line describing the training setup, for logs.

    Args:
        strategy: A ``tf.distribute.Strategy`` or None (the current one).
        policy: String or None (Keras' global dtype policy).
        jit_compile: Boolean or None (``resolve_jit_compile("auto")``).
        devices: A `keras_opt.hardware.devices.Devices`, or None to detect.

    Returns:
        String such as
        ``"devices: 2 x GPU (cc 8.0) | strategy: MirroredStrategy | replicas: 2 |
        policy: mixed_bfloat16 | XLA: off"``.

    Example:
        >>> from keras_opt.hardware import setup_summary
        >>> from keras_opt.hardware.devices import Devices
        >>> setup_summary(policy="float32", jit_compile=False,
        ...               devices=Devices(kind="cpu", cpus=("cpu0",)))
        'devices: 1 x CPU | strategy: default | replicas: 1 | policy: float32 | XLA: off'
    """
    found = devices if devices is not None else _devices.detect_devices()
    strategy = strategy if strategy is not None else tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.Strategy):
        v.fail("strategy", "a tf.distribute.Strategy or None", strategy, exc=TypeError)
    if policy is None:
        policy = keras.mixed_precision.global_policy().name
    if jit_compile is None:
        jit_compile = resolve_jit_compile("auto", strategy=strategy, devices=found)
    if is_default_strategy(strategy):
        name = "default"
    elif isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"
    else:
        name = type(strategy).__name__
    return (
        f"devices: {found.describe()} | strategy: {name} | "
        f"replicas: {strategy.num_replicas_in_sync} | policy: {policy} | "
        f"XLA: {'on' if jit_compile else 'off'}"
    )
