"""Mixed precision: pick the policy for the hardware, keep the model's output in float32.

``"auto"`` picks:

* ``mixed_bfloat16`` on a TPU and on GPUs with bfloat16 support (compute
  capability >= 8.0: A100, L4, H100, RTX 30xx/40xx);
* ``mixed_float16`` on older GPUs (Volta, Turing: tensor cores without bf16);
  Keras then wraps the optimizer in a ``LossScaleOptimizer`` at ``compile``;
* ``float32`` on the CPU (mixed precision is slower there).

**The float32 output layer.** Under a mixed policy every layer computes in
float16/bfloat16, including the last one. A softmax in float16 over many
classes loses precision and can overflow, so the TensorFlow mixed-precision
guide keeps the model's *output* in float32: build the last layer (or a final
``Activation("linear")``) with ``dtype="float32"``. `float32_output` does this
for a built model that forgot: it appends a float32 linear activation to each
output that is not float32 already (a cast, no new weights).

Example:
    >>> from keras_opt.hardware.devices import Devices
    >>> from keras_opt.hardware.precision import resolve_policy
    >>> resolve_policy("auto", Devices(kind="cpu"))
    'float32'
    >>> resolve_policy("auto", Devices(kind="gpu", gpus=("g0",),
    ...                                gpu_compute_capabilities=((7, 5),)))
    'mixed_float16'
"""

from __future__ import annotations

import logging
from typing import Any

from keras_opt import _validation as v
from keras_opt import backend
from keras_opt.backend import keras
from keras_opt.hardware import devices as _devices

logger = logging.getLogger(__name__)

__all__ = ["POLICIES", "resolve_policy", "set_precision", "float32_output"]

POLICIES = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
"""Policies accepted by `resolve_policy` and `set_precision`."""

_BF16_MIN_CC = (8, 0)


def resolve_policy(policy: str = "auto", devices: _devices.Devices | None = None) -> str:
    """Turn ``"auto"`` (or an explicit policy) into a Keras dtype-policy name.

    Args:
        policy: String. One of `POLICIES`.
        devices: A `keras_opt.hardware.devices.Devices`, or None to detect this machine's.

    Returns:
        String: ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.

    Raises:
        ValueError: on an unknown policy.

    Example:
        >>> from keras_opt.hardware.devices import Devices
        >>> from keras_opt.hardware.precision import resolve_policy
        >>> resolve_policy("auto", Devices(kind="tpu", tpu="local"))
        'mixed_bfloat16'
        >>> resolve_policy("mixed_float16")
        'mixed_float16'
    """
    if not isinstance(policy, str):
        v.fail("policy", "a string", policy, exc=TypeError)
    v.one_of("policy", policy, POLICIES)
    if policy != "auto":
        return policy
    if devices is not None and not isinstance(devices, _devices.Devices):
        v.fail("devices", "a keras_opt.hardware.devices.Devices or None", devices, exc=TypeError)
    found = devices if devices is not None else _devices.detect_devices()
    if found.kind == "tpu":
        return "mixed_bfloat16"
    if found.kind == "gpu":
        cc = found.min_compute_capability()
        if cc is not None and cc >= _BF16_MIN_CC:
            return "mixed_bfloat16"
        return "mixed_float16"
    return "float32"


def set_precision(policy: str = "auto", devices: _devices.Devices | None = None) -> str:
    """Resolve ``policy`` and make it Keras' global dtype policy.

    Call it *before* building the model: layers read the global policy when
    they are created. Keep the output in float32 (see the module docstring, or
    wrap the model with `float32_output`).

    Args:
        policy: String. One of `POLICIES`.
        devices: A `keras_opt.hardware.devices.Devices`, or None to detect.

    Returns:
        String: the policy now in force.

    Raises:
        ValueError: on an unknown policy.

    Example:
        >>> from keras_opt.hardware import set_precision
        >>> set_precision("float32")
        'float32'
    """
    name = resolve_policy(policy, devices)
    keras.mixed_precision.set_global_policy(name)
    logger.info("Mixed precision: global policy %s (requested %r).", name, policy)
    return name


def _dtype_name(tensor: Any) -> str:
    dtype = getattr(tensor, "dtype", None)
    return getattr(dtype, "name", str(dtype))


def float32_output(model: Any) -> Any:
    """Return ``model`` with every output cast to float32 (unchanged if already float32).

    Args:
        model: A built Keras model with symbolic inputs (Sequential built with an
            ``Input``, or Functional).

    Returns:
        ``model`` itself when all outputs are float32, otherwise a new Functional
        model sharing its layers (and weights) with a float32 linear activation
        appended to each low-precision output.

    Raises:
        TypeError: if ``model`` is not a Keras model of the flavor in use.
        ValueError: if the model has no symbolic inputs (subclassed, or unbuilt).

    Example:
        >>> from keras_opt.backend import keras
        >>> from keras_opt.hardware import float32_output
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, dtype="float16")])
        >>> [getattr(o.dtype, "name", o.dtype) for o in float32_output(m).outputs]
        ['float32']
    """
    backend.check_model(model)
    try:
        outputs = model.outputs
        inputs = model.inputs
    except (AttributeError, ValueError):
        outputs = inputs = None
    if not outputs or not inputs:
        v.fail(
            "model",
            "a built Sequential or Functional model with symbolic inputs",
            model.name,
            hint="Build it with `keras.Input(...)` first, or give the last layer "
            "`dtype='float32'` yourself",
        )
    if all(_dtype_name(o) == "float32" for o in outputs):
        return model
    new_outputs = [
        o
        if _dtype_name(o) == "float32"
        else keras.layers.Activation("linear", dtype="float32", name=f"float32_output_{i}")(o)
        for i, o in enumerate(outputs)
    ]
    if len(new_outputs) == 1:
        return keras.Model(inputs, new_outputs[0], name=model.name)
    return keras.Model(inputs, new_outputs, name=model.name)
