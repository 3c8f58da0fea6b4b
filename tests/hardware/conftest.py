"""Fixtures for the hardware tests: a faked device boundary and a clean global policy."""

from __future__ import annotations

import dataclasses

import pytest

from keras_opt.backend import keras
from keras_opt.hardware import devices


@dataclasses.dataclass
class FakeDevice:
    name: str
    device_type: str


@pytest.fixture
def fake_devices(monkeypatch):
    """Return a setter ``fake(gpus=[(8, 0), ...], tpu=None)`` that fakes the device boundary."""
    monkeypatch.delenv("TF_CONFIG", raising=False)

    def fake(gpus=(), tpu=None):
        gpu_list = [FakeDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(len(gpus))]
        caps = {d.name: cc for d, cc in zip(gpu_list, gpus, strict=True)}

        def list_physical(device_type):
            if device_type == "GPU":
                return gpu_list
            if device_type == "CPU":
                return [FakeDevice("/physical_device:CPU:0", "CPU")]
            return []

        monkeypatch.setattr(devices, "_list_physical", list_physical)
        monkeypatch.setattr(
            devices,
            "_gpu_details",
            lambda d: {} if caps[d.name] is None else {"compute_capability": caps[d.name]},
        )
        monkeypatch.setattr(devices, "_tpu_hint", lambda: tpu)

    return fake


@pytest.fixture
def restore_policy():
    """Put Keras' global dtype policy back to float32 after the test."""
    yield
    keras.mixed_precision.set_global_policy("float32")
