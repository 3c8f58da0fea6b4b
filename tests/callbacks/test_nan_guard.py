"""NaNGuard rescues a real divergence, and diagnoses the batch when it gives up."""

from __future__ import annotations

import copy
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_opt.backend import keras
from keras_opt.callbacks import NaNGuard, TrainingMonitor
from tests.conftest import build_sequential_cnn, compile_classifier

BATCH = 100


class Sabotage(keras.callbacks.Callback):
    """Sets a huge LR for one step: a real overflow, as a bad LR schedule would cause."""

    def __init__(self, batch=5, lr=1e38):
        super().__init__()
        self.batch, self.lr, self.done = batch, lr, False

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.batch and not self.done:
            self.done = True
            self.model.optimizer.learning_rate.assign(self.lr)


class WeightRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights, self.optimizer = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append(self.model.get_weights())
        self.optimizer.append([v.numpy().copy() for v in self.model.optimizer.variables])


@pytest.fixture(scope="module")
def rescued(digits):
    x, y, x_test, y_test = digits
    model = compile_classifier(
        build_sequential_cnn(), keras.optimizers.SGD(learning_rate=0.05, momentum=0.5)
    )
    monitor, recorder = TrainingMonitor(), WeightRecorder()
    guard = NaNGuard(factor=0.1, backup_every=1)
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=2,
        callbacks=[Sabotage(), monitor, guard, recorder],
        verbose=0,
    )
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    return model, monitor, guard, recorder, history, accuracy


def test_divergence_caught_by_monitor_and_rescued_with_prefault_state(rescued):
    model, monitor, guard, recorder, history, accuracy = rescued
    assert len(guard.rescues) == 1
    event = guard.rescues[0]
    # Step 5 (LR 1e38) poisons the weights; step 6 computes a NaN loss with them.
    assert (event["epoch"], event["batch"], event["cause"]) == (0, 6, "loss")
    assert [e["batch"] for e in monitor.events if e["kind"] == "divergence"] == [6]
    assert monitor.history[0]["diverged"] == 1.0
    # The state after the rescue is, bit for bit, the state before the poisoning step
    # (end of batch 4): weights, BatchNorm statistics, momentum slots, iterations.
    after, before = recorder.weights[6], recorder.weights[4]
    assert all(np.array_equal(a, b) for a, b in zip(after, before, strict=False))
    opt_after = recorder.optimizer[6]
    opt_before = recorder.optimizer[4]
    lr_index = [i for i, v in enumerate(model.optimizer.variables) if "learning_rate" in v.name]
    for i, (a, b) in enumerate(zip(opt_after, opt_before, strict=False)):
        if i not in lr_index:
            np.testing.assert_array_equal(a, b)
    # LR cut from the last good LR, and training went on to a finite, learning model.
    np.testing.assert_allclose(event["lr"], 0.05, rtol=1e-6)
    np.testing.assert_allclose(float(np.asarray(model.optimizer.learning_rate)), 0.005, rtol=1e-6)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][1] < history.history["loss"][0]
    assert accuracy > 0.4  # 10 classes: chance is 0.1
    assert guard.report is None


def test_gives_up_after_max_retries_and_saves_the_offending_batch(digits, tmp_path, caplog):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(learning_rate=1e38))
    initial = model.get_weights()
    guard = NaNGuard(factor=0.5, max_retries=1, save_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="keras_opt"):
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, callbacks=[guard], verbose=0)
    report = guard.report
    assert len(guard.rescues) == 1
    assert report is not None
    assert report["rescues"] == 1
    # The weights are those of before the first (poisoning) step: nothing learned is lost.
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), initial, strict=False))
    # The saved batch is the one the model saw at the reported step (shuffle=False).
    saved = np.load(os.path.join(tmp_path, "nan_batch.npz"))
    b = report["batch"]
    np.testing.assert_array_equal(saved["x0"], x[b * BATCH : (b + 1) * BATCH])
    np.testing.assert_array_equal(saved["y0"], y[b * BATCH : (b + 1) * BATCH])
    # Forward and backward are finite at the good weights: the update overflowed.
    assert report["where"] == "update"
    assert "lower the learning rate" in report["message"]
    assert any("training stopped after 1 rescues" in r.getMessage() for r in caplog.records)


class SqrtShift(keras.layers.Layer):
    """sqrt(x - 0.5): NaN for every pixel below 0.5."""

    def call(self, inputs):
        return tf.sqrt(inputs - 0.5)


def test_reports_first_layer_with_non_finite_output(digits, tmp_path):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    h = SqrtShift(name="sqrt_shift")(h)
    h = keras.layers.Flatten(name="flat")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(h)
    model = compile_classifier(keras.Model(inputs, outputs))
    guard = NaNGuard(max_retries=0, save_dir=tmp_path)
    model.fit(x[:200], y[:200], batch_size=BATCH, epochs=1, callbacks=[guard], verbose=0)
    assert guard.rescues == []
    assert guard.report["where"] == "output"
    assert guard.report["layer"] == "sqrt_shift"
    assert os.path.exists(os.path.join(tmp_path, "nan_batch.npz"))
    # The train step is unwrapped again afterwards.
    assert "train_step" not in model.__dict__


def test_config_round_trip_and_deepcopy(tmp_path):
    guard = NaNGuard(
        factor=0.25, max_retries=2, check_weights=False, backup_every=3, save_dir=tmp_path
    )
    config = guard.get_config()
    assert NaNGuard().get_config()["backup_every"] == 100
    assert NaNGuard(**config).get_config() == config
    clone = copy.deepcopy(guard)
    assert clone.get_config() == config
    assert clone is not guard


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"factor": 1.0}, ValueError, "Argument `factor` must be in"),
        ({"factor": 0}, ValueError, "Received: factor=0"),
        ({"max_retries": -1}, ValueError, "Argument `max_retries` must be >= 0"),
        ({"max_retries": 1.5}, TypeError, "must be an integer"),
        ({"check_weights": 1}, TypeError, "Argument `check_weights` must be a bool"),
        ({"backup_every": 0}, ValueError, "Argument `backup_every` must be >= 1"),
        ({"save_dir": 3}, TypeError, "Argument `save_dir` must be a path"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        NaNGuard(**kwargs)


def test_default_rolls_back_to_the_snapshot_of_step_zero(digits):
    """backup_every=100: the snapshot is the state proven good at step 0 (the initial one)."""
    x, y, _, _ = digits
    model = compile_classifier(
        build_sequential_cnn(), keras.optimizers.SGD(learning_rate=0.05, momentum=0.5)
    )
    initial = model.get_weights()
    recorder, guard = WeightRecorder(), NaNGuard(factor=0.1)
    model.fit(x, y, batch_size=BATCH, epochs=1, callbacks=[Sabotage(), guard, recorder], verbose=0)
    assert [(e["batch"], e["cause"]) for e in guard.rescues] == [(6, "loss")]
    assert all(np.array_equal(a, b) for a, b in zip(recorder.weights[6], initial, strict=False))
    assert int(recorder.optimizer[6][0]) == 0  # iterations rewound with the state
    np.testing.assert_allclose(float(np.asarray(model.optimizer.learning_rate)), 0.005, rtol=1e-6)
