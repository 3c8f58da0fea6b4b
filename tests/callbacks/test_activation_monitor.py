"""ActivationMonitor: dead ReLU units, exact statistics, TensorBoard and the PNG."""

from __future__ import annotations

import copy
import glob
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_opt.backend import keras
from keras_opt.callbacks import ActivationMonitor
from tests.conftest import build_residual_cnn, compile_classifier


def _dead_relu_model():
    keras.utils.set_random_seed(0)
    return compile_classifier(
        keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Flatten(name="flat"),
                keras.layers.Dense(32, activation="relu", name="alive"),
                keras.layers.Dense(
                    32,
                    activation="relu",
                    bias_initializer=keras.initializers.Constant(-20.0),
                    name="dead",
                ),
                keras.layers.Dense(10, activation="softmax", name="head"),
            ]
        )
    )


@pytest.fixture(scope="module")
def dead_run(digits, tmp_path_factory):
    x, y, _, _ = digits
    log_dir = str(tmp_path_factory.mktemp("act_tb"))
    plot_dir = str(tmp_path_factory.mktemp("act_png"))
    model = _dead_relu_model()
    monitor = ActivationMonitor(probe=x[:128], every_n_epochs=2, log_dir=log_dir, plot_dir=plot_dir)
    history = model.fit(
        x[:500], y[:500], batch_size=100, epochs=4, initial_epoch=1, callbacks=[monitor], verbose=0
    )
    return model, monitor, history, log_dir, plot_dir, x[:128]


def test_dead_relu_initialisation_shows_dead_units(dead_run):
    model, monitor, history, _, _, _ = dead_run
    for record in monitor.records:
        layers = record["layers"]
        assert layers["dead"]["dead_fraction"] == 1.0
        assert layers["alive"]["dead_fraction"] < 0.5
        assert layers["flat"]["dead_fraction"] is None  # not a ReLU layer
    assert history.history["dead_fraction"] == [1.0, 1.0, 1.0]
    assert history.history["dead_layers"] == [1.0, 1.0, 1.0]


def test_probe_schedule_respects_initial_epoch(dead_run):
    _, monitor, _, _, _, _ = dead_run
    # Start of training, then after epochs 1 and 3 ((epoch + 1) % 2 == 0).
    assert [r["epoch"] for r in monitor.records] == [None, 1, 3]


def test_statistics_equal_the_layer_output(dead_run):
    model, monitor, _, _, _, x = dead_run
    stats = monitor.measure()
    alive = keras.Model(model.inputs[0], model.get_layer("alive").output)(x, training=True)
    alive = np.asarray(alive, dtype=np.float64)
    np.testing.assert_allclose(stats["alive"]["mean"], alive.mean(), rtol=1e-6)
    np.testing.assert_allclose(stats["alive"]["std"], alive.std(), rtol=1e-6)
    dead_units = np.all(alive <= 0, axis=0).mean()
    assert stats["alive"]["dead_fraction"] == pytest.approx(dead_units)
    counts, edges = stats["alive"]["histogram"]
    assert counts.sum() == alive.size
    assert len(edges) == 41


def test_tensorboard_histograms_and_png(dead_run):
    _, monitor, _, log_dir, plot_dir, _ = dead_run
    tags = {}
    for path in glob.glob(os.path.join(log_dir, "train", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags["activations/alive"] == [0, 2, 4]
    assert tags["activations/dead/dead_fraction"] == [0, 2, 4]
    with open(os.path.join(plot_dir, "activation_histograms.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_batchnorm_statistics_untouched_and_warning(digits, caplog):
    x, y, _, _ = digits
    model = compile_classifier(build_residual_cnn())
    monitor = ActivationMonitor(probe=(x[:64], y[:64]), dead_threshold=0.0)
    monitor.set_model(model)
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    with caplog.at_level(logging.WARNING, logger="keras_opt"):
        monitor.on_train_begin()
    for b, v in zip(before, model.non_trainable_variables, strict=False):
        np.testing.assert_array_equal(b, v.numpy())
    layers = monitor.records[0]["layers"]
    assert layers["stem_relu"]["dead_fraction"] is not None
    assert layers["stem_bn"]["dead_fraction"] is None
    # Training-mode BatchNorm output (gamma=1, beta=0): mean 0, std just under 1
    # (sqrt(var / (var + epsilon)) per channel).
    assert abs(layers["stem_bn"]["mean"]) < 1e-4
    assert 0.9 < layers["stem_bn"]["std"] <= 1.0


def test_subclassed_model_gets_a_clear_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    model = Net()
    model(np.zeros((2, 3), "float32"))
    monitor = ActivationMonitor(probe=np.zeros((2, 3), "float32"))
    monitor.set_model(model)
    with pytest.raises(TypeError, match="Sequential or Functional model"):
        monitor.on_train_begin()


def test_config_round_trip_and_deepcopy(tmp_path):
    monitor = ActivationMonitor(np.zeros((2, 3)), every_n_epochs=3, bins=10, plot_dir=str(tmp_path))
    config = monitor.get_config()
    assert ActivationMonitor(np.zeros((2, 3)), **config).get_config() == config
    assert copy.deepcopy(monitor).get_config() == config
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every_n_epochs": 0}, ValueError, "Argument `every_n_epochs` must be >= 1"),
        ({"dead_threshold": 1.5}, ValueError, "Argument `dead_threshold` must be in"),
        ({"bins": 1}, ValueError, "Argument `bins` must be >= 2"),
        ({"plot_dir": 2}, TypeError, "Argument `plot_dir` must be a path"),
        ({"probe": ()}, ValueError, "Argument `probe` must be"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"probe": np.zeros((2, 3)), **kwargs}
    with pytest.raises(error, match=match):
        ActivationMonitor(**kwargs)
