"""`setup_summary`: one line naming devices, strategy, replicas, policy and XLA."""

from __future__ import annotations

import pytest
import tensorflow as tf

from keras_opt import hardware
from keras_opt.hardware.devices import Devices
from keras_opt.hardware.summary import setup_summary

CPU = Devices(kind="cpu", cpus=("cpu0",))


def gpus(*caps):
    return Devices(
        kind="gpu", gpus=tuple(f"g{i}" for i in range(len(caps))), gpu_compute_capabilities=caps
    )


def test_setup_summary_is_exported_by_the_package():
    assert hardware.setup_summary is setup_summary
    assert "setup_summary" in hardware.__all__


def test_setup_summary_line():
    line = setup_summary(devices=gpus((8, 0), (8, 0)), policy="mixed_bfloat16", jit_compile=True)
    assert line == (
        "devices: 2 x GPU (cc 8.0) | strategy: default | replicas: 1 | "
        "policy: mixed_bfloat16 | XLA: on"
    )
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert "strategy: MirroredStrategy | replicas: 1 | policy: float32 | XLA: off" in (
        setup_summary(mirrored, devices=CPU)
    )
    with pytest.raises(TypeError, match="Argument `strategy`"):
        setup_summary("mirrored", devices=CPU)
