"""XLA (``jit_compile``): whether to compile the train step, as Keras would decide.

``resolve_jit_compile("auto")`` follows the rule of the Keras flavor in use,
so the answer is what ``model.compile(jit_compile=...)`` would do:

* **Keras 3** (``Trainer._resolve_auto_jit_compile``): off on a CPU-only
  machine, off under a non-default ``tf.distribute`` strategy, otherwise on
  when every layer ``supports_jit`` (and op determinism is off).
* **tf_keras**: ``compile(jit_compile=None)`` never turns XLA on by itself, so
  ``"auto"`` is off.

Example:
    >>> from keras_opt.hardware import resolve_jit_compile
    >>> from keras_opt.hardware.devices import Devices
    >>> resolve_jit_compile("auto", devices=Devices(kind="cpu"))
    False
    >>> resolve_jit_compile(True)
    True
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_opt import _validation as v
from keras_opt import backend
from keras_opt.hardware import devices as _devices
from keras_opt.hardware.strategy import is_default_strategy

__all__ = ["resolve_jit_compile"]


def _model_supports_jit(model: Any) -> bool:
    if not all(getattr(layer, "supports_jit", True) for layer in model._flatten_layers()):
        return False
    from tensorflow.python.framework.config import is_op_determinism_enabled

    return not is_op_determinism_enabled()


def resolve_jit_compile(
    jit_compile: bool | str = "auto",
    model: Any = None,
    strategy: Any = None,
    devices: _devices.Devices | None = None,
) -> bool:
    """Decide whether to compile the train step with XLA.

    Args:
        jit_compile: ``"auto"``, True or False. True/False are returned as given.
        model: A Keras model or None. Under Keras 3, ``"auto"`` also requires
            every layer to support XLA.
        strategy: A ``tf.distribute.Strategy`` or None. Keras 3 turns
            ``"auto"`` off under a non-default strategy. None reads the model's
            strategy, else the current one.
        devices: A `keras_opt.hardware.devices.Devices`, or None to detect.

    Returns:
        Boolean: pass it as ``model.compile(..., jit_compile=...)``.

    Raises:
        ValueError: if ``jit_compile`` is not ``"auto"``, True or False.

    Example:
        >>> from keras_opt.backend import is_tf_keras
        >>> from keras_opt.hardware import resolve_jit_compile
        >>> from keras_opt.hardware.devices import Devices
        >>> gpu = Devices(kind="gpu", gpus=("g0",), gpu_compute_capabilities=((8, 0),))
        >>> resolve_jit_compile("auto", devices=gpu) == (not is_tf_keras())
        True
    """
    if jit_compile is True or jit_compile is False:
        return bool(jit_compile)
    if jit_compile != "auto":
        v.fail("jit_compile", "'auto', True or False", jit_compile)
    if model is not None:
        backend.check_model(model)
    if backend.is_tf_keras():
        return False
    found = devices if devices is not None else _devices.detect_devices()
    if found.kind == "cpu":
        return False
    if strategy is None:
        strategy = (
            getattr(model, "distribute_strategy", None)
            if model is not None
            else tf.distribute.get_strategy()
        )
    if strategy is not None and not is_default_strategy(strategy):
        return False
    return model is None or _model_supports_jit(model)
