"""Mixed-precision 'auto' policy per device kind, the float32 output, the XLA choice."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_opt import backend, hardware
from keras_opt.backend import keras
from keras_opt.callbacks import LRScheduler
from keras_opt.hardware.devices import Devices
from keras_opt.hardware.precision import resolve_policy
from keras_opt.schedules import OneCycle
from tests.conftest import build_residual_cnn, compile_classifier

CPU = Devices(kind="cpu", cpus=("cpu0",))
TPU = Devices(kind="tpu", tpu="local")


def gpus(*caps):
    return Devices(
        kind="gpu", gpus=tuple(f"g{i}" for i in range(len(caps))), gpu_compute_capabilities=caps
    )


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        (CPU, "float32"),
        (TPU, "mixed_bfloat16"),
        (gpus((8, 0)), "mixed_bfloat16"),
        (gpus((9, 0), (8, 6)), "mixed_bfloat16"),
        (gpus((7, 5)), "mixed_float16"),
        (gpus((8, 0), (7, 0)), "mixed_float16"),  # the oldest GPU decides
        (gpus(None), "mixed_float16"),  # unknown capability: the safe choice
    ],
)
def test_auto_policy_per_device_kind(devices, expected):
    assert resolve_policy("auto", devices) == expected


def test_auto_policy_reads_the_device_boundary(fake_devices):
    fake_devices(gpus=[(8, 0)])
    assert resolve_policy("auto") == "mixed_bfloat16"
    fake_devices(gpus=[(6, 1), (6, 1)])
    assert resolve_policy("auto") == "mixed_float16"
    fake_devices()
    assert resolve_policy() == "float32"


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_policies_are_kept(policy, restore_policy):
    assert resolve_policy(policy, TPU) == policy
    assert hardware.set_precision(policy) == policy
    assert keras.mixed_precision.global_policy().name == policy


@pytest.mark.parametrize(
    ("policy", "exc", "fragment"),
    [
        ("float16", ValueError, "Argument `policy` must be one of 'auto', 'float32'"),
        ("bf16", ValueError, "Received: policy='bf16'"),
        (16, TypeError, "Argument `policy` must be a string. Received: policy=16"),
    ],
)
def test_bad_policy_names_are_clear_errors(policy, exc, fragment):
    with pytest.raises(exc, match=fragment):
        resolve_policy(policy)


def _dtype(tensor):
    return getattr(tensor.dtype, "name", tensor.dtype)


@pytest.mark.slow
def test_float32_output_under_mixed_float16_trains_with_lr_scheduler(digits, restore_policy):
    x, y, _, _ = digits
    hardware.set_precision("mixed_float16")
    model = build_residual_cnn()
    assert _dtype(model.output) == "float16"
    wrapped = hardware.float32_output(model)
    assert _dtype(wrapped.output) == "float32"
    assert wrapped.get_layer("head") is model.get_layer("head")  # shares the layers
    compile_classifier(wrapped, keras.optimizers.Adam(1e-3))
    history = wrapped.fit(
        x[:384],
        y[:384],
        batch_size=32,
        epochs=2,
        verbose=0,
        callbacks=[LRScheduler(OneCycle(max_lr=0.01))],
    )
    # Dynamic loss scaling skips the first steps (scale 2**15 overflows float16 and is
    # halved until it fits); 24 steps leave enough real updates.
    assert np.all(np.isfinite(history.history["loss"]))
    assert type(wrapped.optimizer).__name__.startswith("LossScaleOptimizer")
    assert history.history["loss"][1] < history.history["loss"][0]
    lr = history.history["learning_rate"]
    assert lr[0] > lr[1] > 0  # OneCycle drove the (loss-scaled) optimizer's LR
    assert hardware.float32_output(wrapped) is wrapped  # already float32: unchanged


def test_float32_output_needs_symbolic_inputs():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="Argument `model` must be a built Sequential"):
        hardware.float32_output(Sub())
    with pytest.raises(TypeError, match="Argument `model`"):
        hardware.float32_output("model")


def test_jit_compile_explicit_and_bad_values():
    assert hardware.resolve_jit_compile(True) is True
    assert hardware.resolve_jit_compile(False) is False
    with pytest.raises(ValueError, match="Argument `jit_compile` must be 'auto', True or False"):
        hardware.resolve_jit_compile("yes")


def test_jit_auto_follows_the_flavor_rule():
    gpu = gpus((8, 0))
    assert hardware.resolve_jit_compile("auto", devices=CPU) is False  # CPU-only: off
    on_gpu = hardware.resolve_jit_compile("auto", devices=gpu)
    assert on_gpu is (not backend.is_tf_keras())  # tf_keras never turns XLA on itself
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert hardware.resolve_jit_compile("auto", strategy=mirrored, devices=gpu) is False


@pytest.mark.keras3_only
def test_jit_auto_is_off_when_a_layer_does_not_support_xla():
    model = build_residual_cnn()
    gpu = gpus((8, 0))
    assert hardware.resolve_jit_compile("auto", model=model, devices=gpu) is True
    model.get_layer("head").supports_jit = False
    assert hardware.resolve_jit_compile("auto", model=model, devices=gpu) is False
