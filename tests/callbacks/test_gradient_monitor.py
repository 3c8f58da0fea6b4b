"""GradientMonitor: exact norms, update ratios, vanishing/exploding flags, TensorBoard."""

from __future__ import annotations

import copy
import glob
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_opt.backend import keras
from keras_opt.callbacks import GradientMonitor
from tests.conftest import build_residual_cnn, build_sequential_cnn, compile_classifier

BATCH = 100


class WeightsAroundFirstStep(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if not hasattr(self, "before"):
            self.before = [v.numpy().copy() for v in self.model.trainable_variables]

    def on_train_batch_end(self, batch, logs=None):
        if not hasattr(self, "after"):
            self.after = [v.numpy().copy() for v in self.model.trainable_variables]


@pytest.fixture(scope="module")
def monitored(digits, tmp_path_factory):
    x, y, _, _ = digits
    log_dir = str(tmp_path_factory.mktemp("tb"))
    model = compile_classifier(build_residual_cnn())
    monitor = GradientMonitor(probe=(x[:64], y[:64]), every_n_steps=5, log_dir=log_dir)
    recorder = WeightsAroundFirstStep()
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=3,
        initial_epoch=1,
        callbacks=[recorder, monitor],
        verbose=0,
    )
    return model, monitor, recorder, history, log_dir, (x[:64], y[:64])


def test_norms_equal_gradient_tape_on_the_same_batch(monitored):
    model, monitor, _, _, _, (x, y) = monitored
    state = [v.numpy().copy() for v in model.non_trainable_variables]
    record = monitor.measure()
    # The probe left BatchNorm's moving statistics untouched.
    for before, var in zip(state, model.non_trainable_variables, strict=False):
        np.testing.assert_array_equal(before, var.numpy())
    with tf.GradientTape() as tape:
        pred = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, pred))
    grads = tape.gradient(loss, model.trainable_variables)
    for v in model.non_trainable_variables:  # undo this tape's BatchNorm update
        v.assign(state.pop(0))
    np.testing.assert_allclose(record["loss"], float(loss), rtol=1e-5)
    np.testing.assert_allclose(record["grad_norm"], float(tf.linalg.global_norm(grads)), rtol=1e-5)
    by_layer = {}
    for var, g in zip(model.trainable_variables, grads, strict=False):
        layer = (getattr(var, "path", None) or var.name).split("/")[0]
        by_layer[layer] = by_layer.get(layer, 0.0) + float(tf.reduce_sum(g * g))
    assert (
        set(record["layer_norms"])
        == set(by_layer)
        == {"stem", "stem_bn", "res_conv", "res_bn", "head"}
    )
    for name, sq in by_layer.items():
        np.testing.assert_allclose(record["layer_norms"][name], math.sqrt(sq), rtol=1e-5)


def test_probe_schedule_and_update_ratio(monitored):
    model, monitor, recorder, history, _, _ = monitored
    # 14 steps per epoch, 2 epochs (initial_epoch=1): probes at steps 0, 5, 10, ..., 25.
    assert [r["step"] for r in monitor.records] == [0, 5, 10, 15, 20, 25]
    assert [r["epoch"] for r in monitor.records] == [1, 1, 1, 2, 2, 2]
    first = monitor.records[0]
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    for layer in ("stem", "head"):
        ids = [index[id(w)] for w in model.get_layer(layer).trainable_weights]
        delta = sum(float(np.sum((recorder.after[i] - recorder.before[i]) ** 2)) for i in ids)
        norm = sum(float(np.sum(recorder.before[i] ** 2)) for i in ids)
        np.testing.assert_allclose(
            first["update_ratios"][layer], math.sqrt(delta / norm), rtol=1e-4
        )
    # Healthy Adam training: ratios near Karpathy's 1e-3, no flags.
    assert 1e-5 < first["update_ratio"] < 0.1
    assert history.history["grad_vanishing"] == [0.0, 0.0]
    assert history.history["grad_exploding"] == [0.0, 0.0]
    assert history.history["grad_norm"][-1] == monitor.records[-1]["grad_norm"]


def test_tensorboard_scalars_next_to_keras_files(monitored):
    _, monitor, _, _, log_dir, _ = monitored
    files = glob.glob(os.path.join(log_dir, "train", "events.out.tfevents.*"))
    assert files
    seen = {}
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                seen.setdefault(value.tag, []).append(event.step)
    assert seen["gradients/global_norm"] == [r["step"] for r in monitor.records]
    assert "gradients/head/norm" in seen
    assert "gradients/stem/update_ratio" in seen


def test_deep_sigmoid_stack_shows_vanishing_gradients(digits, caplog):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    layers = [keras.Input((8, 8, 1)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(32, activation="sigmoid", name=f"s{i}") for i in range(12)]
    layers += [keras.layers.Dense(10, activation="softmax", name="head")]
    model = compile_classifier(keras.Sequential(layers), keras.optimizers.SGD(0.01))
    monitor = GradientMonitor(probe=(x[:64], y[:64]), every_n_steps=4)
    with caplog.at_level("WARNING", logger="keras_opt"):
        history = model.fit(x[:400], y[:400], batch_size=BATCH, callbacks=[monitor], verbose=0)
    norms = monitor.records[0]["layer_norms"]
    assert norms["s0"] < 1e-4 * norms["head"]
    assert "s0" in monitor.records[0]["vanishing_layers"]
    assert "head" not in monitor.records[0]["vanishing_layers"]
    assert history.history["grad_vanishing"] == [1.0]
    assert any("vanishing gradients" in r.getMessage() for r in caplog.records)


def test_huge_lr_flags_exploding_updates_with_steps_per_execution(digits):
    x, y, _, _ = digits
    model = build_residual_cnn()
    model.compile(
        optimizer=keras.optimizers.SGD(50.0),
        loss="sparse_categorical_crossentropy",
        steps_per_execution=2,
    )
    monitor = GradientMonitor(probe=(x[:64], y[:64]), every_n_steps=4)
    history = model.fit(x[:800], y[:800], batch_size=BATCH, callbacks=[monitor], verbose=0)
    # 8 steps, hooks every 2 steps: probes before steps 0 and 4.
    assert [r["step"] for r in monitor.records] == [0, 4]
    assert monitor.records[0]["large_update_layers"]
    assert history.history["grad_exploding"] == [1.0]


def test_config_round_trip_and_deepcopy(tmp_path):
    probe = (np.zeros((4, 3), "float32"), np.zeros((4,), "float32"))
    monitor = GradientMonitor(
        probe, every_n_steps=7, vanishing_threshold=1e-3, log_dir=str(tmp_path)
    )
    config = monitor.get_config()
    assert GradientMonitor(probe, **config).get_config() == config
    clone = copy.deepcopy(monitor)
    assert clone.get_config() == config
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every_n_steps": 0}, ValueError, "Argument `every_n_steps` must be >= 1"),
        ({"vanishing_threshold": 1.0}, ValueError, "Argument `vanishing_threshold` must be in"),
        ({"exploding_threshold": -1.0}, ValueError, "Argument `exploding_threshold` must be > 0"),
        ({"max_update_ratio": 0}, ValueError, "Argument `max_update_ratio` must be > 0"),
        ({"log_dir": 1}, TypeError, "Argument `log_dir` must be a path"),
        ({"probe": np.zeros((4, 3))}, ValueError, "Argument `probe` must be \\(x, y\\)"),
        ({"probe": (1, 2, 3, 4)}, ValueError, "Argument `probe` must be"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"probe": (np.zeros((4, 3)), np.zeros(4)), **kwargs}
    with pytest.raises(error, match=match):
        GradientMonitor(**kwargs)


def test_mixed_precision_gradients_are_unscaled(digits):
    x, y, _, _ = digits
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = compile_classifier(build_sequential_cnn())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert "LossScaleOptimizer" in type(model.optimizer).__name__
    monitor = GradientMonitor(probe=(x[:64], y[:64]), every_n_steps=5)
    model.fit(x[:300], y[:300], batch_size=50, callbacks=[monitor], verbose=0)
    record = monitor.measure()
    # The same weights in a float32 model: the float16 probe's norm is the true one
    # (not multiplied by the loss scale, not underflowed).
    reference = compile_classifier(build_sequential_cnn())
    reference.set_weights(model.get_weights())
    with tf.GradientTape() as tape:
        pred = reference(x[:64], training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y[:64], pred))
    grads = tape.gradient(loss, reference.trainable_variables)
    np.testing.assert_allclose(record["grad_norm"], float(tf.linalg.global_norm(grads)), rtol=1e-2)
