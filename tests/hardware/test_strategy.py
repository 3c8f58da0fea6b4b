"""auto_strategy detection order, overrides, TF_CONFIG parsing and check_strategy."""

from __future__ import annotations

import json
import logging
from unittest import mock

import pytest
import tensorflow as tf

from keras_opt import hardware
from keras_opt.hardware import devices
from keras_opt.hardware import strategy as strategy_module


def _tf_config(monkeypatch, workers):
    cluster = {"worker": [f"127.0.0.1:{20000 + i}" for i in range(workers)]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    )


@pytest.fixture
def sentinels(monkeypatch):
    """Replace the TPU and multi-worker builders (they need a TPU / a live cluster)."""
    made = {}

    def tpu(address):
        made["tpu"] = address
        return "TPU-STRATEGY"

    def multi():
        made["multi_worker"] = True
        return "MULTI-WORKER-STRATEGY"

    monkeypatch.setattr(strategy_module, "_tpu_strategy", tpu)
    monkeypatch.setattr(strategy_module, "_multi_worker_strategy", multi)
    return made


def test_cpu_only_machine_gets_default_strategy_and_logs_reason(fake_devices, caplog):
    fake_devices()
    with caplog.at_level(logging.INFO, logger="keras_opt.hardware.strategy"):
        s = hardware.auto_strategy()
    assert strategy_module.is_default_strategy(s)
    assert "default strategy (no TPU, no TF_CONFIG cluster and no GPU" in caplog.text


def test_real_device_listing_on_this_machine_gives_default(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    found = devices.detect_devices()
    if found.kind != "cpu":
        pytest.skip("this machine has an accelerator")
    assert strategy_module.is_default_strategy(hardware.auto_strategy())


def test_tpu_comes_first(fake_devices, sentinels, monkeypatch, caplog):
    fake_devices(gpus=[(8, 0), (8, 0)], tpu="local")
    _tf_config(monkeypatch, 2)
    with caplog.at_level(logging.INFO, logger="keras_opt.hardware.strategy"):
        assert hardware.auto_strategy() == "TPU-STRATEGY"
    assert sentinels == {"tpu": "local"}
    assert "tpu strategy (a TPU was found (local))" in caplog.text


def test_tf_config_cluster_beats_gpus(fake_devices, sentinels, monkeypatch, caplog):
    fake_devices(gpus=[(8, 0), (8, 0)])
    _tf_config(monkeypatch, 2)
    with caplog.at_level(logging.INFO, logger="keras_opt.hardware.strategy"):
        assert hardware.auto_strategy() == "MULTI-WORKER-STRATEGY"
    assert "multi_worker strategy (TF_CONFIG lists 2 tasks)" in caplog.text


def test_single_task_tf_config_is_not_multi_worker(fake_devices, sentinels, monkeypatch):
    fake_devices()
    _tf_config(monkeypatch, 1)
    assert strategy_module.is_default_strategy(hardware.auto_strategy())
    assert sentinels == {}


def test_several_gpus_give_mirrored_over_all_of_them(fake_devices, caplog):
    fake_devices(gpus=[(7, 0), (7, 0), (7, 0)])
    with caplog.at_level(logging.INFO, logger="keras_opt.hardware.strategy"):
        s = hardware.auto_strategy()
    assert isinstance(s, tf.distribute.MirroredStrategy)
    assert s.num_replicas_in_sync == 3
    assert [d.split("/")[-1] for d in s.extended.worker_devices] == [
        "device:GPU:0",
        "device:GPU:1",
        "device:GPU:2",
    ]
    assert "mirrored strategy (3 GPUs were found)" in caplog.text


def test_one_gpu_gives_one_device_strategy(fake_devices):
    fake_devices(gpus=[(8, 6)])
    s = hardware.auto_strategy()
    assert isinstance(s, tf.distribute.OneDeviceStrategy)
    assert s.extended.worker_devices[0].endswith("GPU:0")


def test_override_by_name(fake_devices, sentinels):
    fake_devices(gpus=[(8, 0), (8, 0)])
    assert strategy_module.is_default_strategy(hardware.auto_strategy("default"))
    assert hardware.auto_strategy("multi_worker") == "MULTI-WORKER-STRATEGY"
    one = hardware.auto_strategy("one_device")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    fake_devices()
    assert hardware.auto_strategy("one_device").extended.worker_devices[0].endswith("CPU:0")


@pytest.mark.parametrize(
    ("name", "exc", "fragment"),
    [
        ("gpu", ValueError, "Argument `name` must be one of 'tpu', 'multi_worker'"),
        (3, TypeError, "Argument `name` must be a string or None. Received: name=3"),
    ],
)
def test_bad_strategy_name_is_a_clear_error(name, exc, fragment):
    with pytest.raises(exc, match=fragment.replace("(", r"\(")):
        hardware.auto_strategy(name)


def test_bad_tf_config_json_is_a_clear_error(fake_devices, monkeypatch):
    fake_devices()
    monkeypatch.setenv("TF_CONFIG", "{cluster: oops")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        hardware.auto_strategy()


def test_parameter_server_tf_config_is_refused(fake_devices, monkeypatch):
    fake_devices()
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}}),
    )
    with pytest.raises(ValueError, match="ParameterServerStrategy"):
        hardware.auto_strategy()


def _plain_multi_worker():
    fake = mock.MagicMock(spec=tf.distribute.MultiWorkerMirroredStrategy)
    fake.extended._in_multi_worker_mode.return_value = True
    return fake


@pytest.mark.keras3_only
def test_check_strategy_names_keras_bug_and_both_routes():
    with pytest.raises(RuntimeError) as err:
        strategy_module.check_strategy(_plain_multi_worker())
    msg = str(err.value)
    assert "keras-team/keras/issues/20585" in msg
    assert "auto_strategy('multi_worker')" in msg
    assert "TF_USE_LEGACY_KERAS=1" in msg


@pytest.mark.tf_keras_only
def test_check_strategy_accepts_plain_multi_worker_under_tf_keras():
    strategy_module.check_strategy(_plain_multi_worker())


def test_check_strategy_accepts_mirrored_and_rejects_non_strategies():
    strategy_module.check_strategy(tf.distribute.get_strategy())
    with pytest.raises(TypeError, match="Argument `strategy` must be a tf.distribute.Strategy"):
        strategy_module.check_strategy("mirrored")
