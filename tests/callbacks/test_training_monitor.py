"""TrainingMonitor: scripted hooks for each alarm, a real fit for timing and history files."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import textwrap

import numpy as np
import pytest

from keras_opt.backend import flavor, keras
from keras_opt.callbacks import GradientMonitor, LRFinder, LRScheduler, NaNGuard, TrainingMonitor
from keras_opt.schedules import OneCycle
from tests._fresh_process import run_script
from tests.conftest import build_residual_cnn, compile_classifier


def _feed_epoch(cb, epoch, batch_losses, epoch_logs=None):
    """Call the hooks like Keras does: batch logs hold the running mean."""
    cb.on_epoch_begin(epoch)
    batch_logs = []
    for b, _ in enumerate(batch_losses):
        cb.on_train_batch_begin(b)
        logs = {"loss": float(np.mean(batch_losses[: b + 1]))}
        cb.on_train_batch_end(b, logs)
        batch_logs.append(logs)
    logs = dict(epoch_logs or {"loss": float(np.mean(batch_losses))})
    cb.on_epoch_end(epoch, logs)
    return batch_logs, logs


def test_true_batch_loss_recovered_from_running_means():
    cb = TrainingMonitor()
    cb.on_train_begin()
    losses = [2.0, 1.5, 1.7, 1.2, 1.1]
    batch_logs, _ = _feed_epoch(cb, 0, losses)
    np.testing.assert_allclose([b["batch_loss"] for b in batch_logs], losses, rtol=1e-12)
    np.testing.assert_allclose(cb.batch_losses[0], losses, rtol=1e-12)


@pytest.mark.parametrize(
    ("losses", "diverged_at"),
    [
        ([1.0] * 10, None),
        ([1.0, 0.9, 0.8, 0.7, math.nan, 0.7], 4),
        ([1.0, 0.9, 0.8, math.inf], 3),
        ([1.0, 0.8, 0.6, 0.5, 5.0, 20.0, 50.0], 4),  # smoothed 2.87 > 4 x best 0.6
        ([1.0, 0.8, 0.6, 0.5, 1.5, 0.5, 0.5], None),  # a bump, not divergence
    ],
)
def test_divergence_detection(losses, diverged_at):
    cb = TrainingMonitor(divergence_factor=4.0, smoothing=0.5)
    cb.on_train_begin()
    batch_logs, epoch_logs = _feed_epoch(cb, 0, losses, {"loss": 1.0})
    flags = [b["diverged"] for b in batch_logs]
    events = [e for e in cb.events if e["kind"] == "divergence"]
    if diverged_at is None:
        assert not any(flags)
        assert events == []
        assert epoch_logs["diverged"] == 0.0
    else:
        assert flags.index(1.0) == diverged_at
        assert [e["batch"] for e in events] == [diverged_at]  # warned once per epoch
        assert epoch_logs["diverged"] == 1.0


def test_divergence_can_stop_training(sequential_cnn):
    cb = TrainingMonitor(stop_on_divergence=True)
    cb.set_model(sequential_cnn)
    sequential_cnn.stop_training = False
    cb.on_train_begin()
    _feed_epoch(cb, 0, [1.0, math.nan])
    assert sequential_cnn.stop_training is True


@pytest.mark.parametrize(
    ("losses", "spikes"),
    [
        ([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 3.5, 1.0], [6]),
        ([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 2.5, 1.0], []),  # 2.5 < 3 x median
        ([1.0, 1.0, 10.0, 1.0, 1.0, 1.0], []),  # too little history at batch 2
        ([1.0] * 6 + [5.0, 1.0, 6.0], [6, 8]),
    ],
)
def test_spike_detection(losses, spikes):
    cb = TrainingMonitor(spike_factor=3.0, divergence_factor=100.0)
    cb.on_train_begin()
    batch_logs, epoch_logs = _feed_epoch(cb, 0, losses)
    assert [i for i, b in enumerate(batch_logs) if b["loss_spike"]] == spikes
    assert [e["batch"] for e in cb.events if e["kind"] == "spike"] == spikes
    assert epoch_logs["loss_spikes"] == len(spikes)


@pytest.mark.parametrize(
    ("epoch_losses", "patience", "plateau_epochs"),
    [
        ([1.0, 0.9, 0.8, 0.7, 0.6], 2, []),
        ([1.0, 0.9, 0.9, 0.9, 0.9, 0.8], 2, [3, 4]),
        ([1.0, 1.0, 1.0], 1, [1, 2]),
        ([1.0, 0.99995, 0.9999, 0.9998], 3, [3]),  # below min_delta=1e-4 is no improvement
    ],
)
def test_plateau_detection(epoch_losses, patience, plateau_epochs):
    cb = TrainingMonitor(plateau_patience=patience, min_delta=1e-3)
    cb.on_train_begin()
    flags = []
    for epoch, loss in enumerate(epoch_losses):
        _, logs = _feed_epoch(cb, epoch, [loss], {"loss": loss})
        flags.append(logs["plateau"])
    assert [e for e, f in enumerate(flags) if f] == plateau_epochs
    events = [e["epoch"] for e in cb.events if e["kind"] == "plateau"]
    assert events == plateau_epochs[:1]


@pytest.mark.parametrize(
    ("train", "val", "overfit_epochs"),
    [
        ([1.0, 0.8, 0.6, 0.4, 0.3], [1.0, 0.9, 0.8, 0.7, 0.6], []),
        ([1.0, 0.8, 0.6, 0.4, 0.3, 0.2], [1.0, 0.9, 1.0, 1.1, 1.2, 1.3], [4, 5]),
        ([1.0, 0.8, 0.6, 0.4, 0.3], [1.0, 1.1, 1.2, 1.1, 1.3], []),  # streak broken
        ([1.0, 1.1, 1.2, 1.3], [1.0, 1.1, 1.2, 1.3], []),  # both rise: not overfitting
    ],
)
def test_overfitting_detection(train, val, overfit_epochs):
    cb = TrainingMonitor(overfit_patience=3, divergence_factor=100.0)
    cb.on_train_begin()
    flags = []
    for epoch, (t, v) in enumerate(zip(train, val, strict=False)):
        _, logs = _feed_epoch(cb, epoch, [t], {"loss": t, "val_loss": v})
        flags.append(logs["overfitting"])
    assert [e for e, f in enumerate(flags) if f] == overfit_epochs
    assert [e["epoch"] for e in cb.events if e["kind"] == "overfitting"] == overfit_epochs[:1]


def test_overfitting_skipped_without_validation():
    cb = TrainingMonitor(overfit_patience=1)
    cb.on_train_begin()
    for epoch, t in enumerate([1.0, 0.5, 0.25]):
        _, logs = _feed_epoch(cb, epoch, [t])
        assert logs["overfitting"] == 0.0


def test_missing_monitor_warns_with_available_keys():
    cb = TrainingMonitor(monitor="val_accuracy")
    cb.on_train_begin()
    with pytest.warns(UserWarning, match=r"val_accuracy.*Available keys"):
        _feed_epoch(cb, 0, [1.0])


@pytest.fixture(scope="module")
def fitted(digits, tmp_path_factory):
    x, y, x_test, y_test = digits
    log_dir = tmp_path_factory.mktemp("monitor")
    model = compile_classifier(build_residual_cnn())
    monitor = TrainingMonitor(log_dir=log_dir, batch_size=100)
    recorder = _TensorLogsRecorder()
    history = model.fit(
        x,
        y,
        batch_size=100,
        epochs=3,
        initial_epoch=1,
        validation_data=(x_test, y_test),
        callbacks=[monitor, recorder],
        verbose=0,
    )
    return monitor, history, log_dir, recorder.batch_logs


class _TensorLogsRecorder(keras.callbacks.Callback):
    """Records batch logs as it gets them, and takes them unconverted where tf_keras can."""

    def __init__(self):
        super().__init__()
        self._supports_tf_logs = True
        self.batch_logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.batch_logs.append(dict(logs))


def test_batch_logs_stay_tensors_and_batch_keys_stay_out_of_epoch_logs(fitted):
    monitor, history, _, batch_logs = fitted
    # tf_keras converts every batch's logs to NumPy unless all batch-hook callbacks take
    # tensors; Keras 3 always hands over Python floats.
    loss = batch_logs[0]["loss"]
    assert hasattr(loss, "numpy") if flavor() == "tf_keras" else isinstance(loss, float)
    np.testing.assert_allclose(
        [b["batch_loss"] for b in batch_logs], sum(monitor.batch_losses, []), rtol=1e-12
    )
    assert {b["loss_spike"] for b in batch_logs} == {0.0}
    # tf_keras makes the epoch logs from the last batch's dict, which the monitor wrote into.
    for key in ("batch_loss", "loss_spike"):
        assert key not in history.history
        assert all(key not in row for row in monitor.history)


def test_keras_opt_batch_hooks_do_not_make_tf_keras_convert_logs(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_residual_cnn())
    callbacks = [
        TrainingMonitor(),
        GradientMonitor(probe=(x[:8], y[:8])),
        LRFinder(num_steps=5),
        LRScheduler(OneCycle(max_lr=0.01)),
        NaNGuard(),
    ]
    cb_list = keras.callbacks.CallbackList(callbacks, add_history=True, model=model)
    if flavor() == "tf_keras":
        assert cb_list._should_call_train_batch_hooks  # the monitor, the probe, the finder
        assert cb_list._batch_hooks_support_tf_logs
    else:  # Keras 3 always converts the logs; nothing to skip
        assert not hasattr(cb_list, "_batch_hooks_support_tf_logs")


def test_real_fit_logs_timing_and_true_batch_losses(fitted):
    monitor, history, _, _ = fitted
    assert [row["epoch"] for row in monitor.history] == [1, 2]  # initial_epoch=1
    for key in ("epoch_time", "step_time", "steps_per_sec", "samples_per_sec", "diverged"):
        assert len(history.history[key]) == 2
    for row in monitor.history:
        assert row["epoch_time"] > 0
        assert row["step_time"] > 0
        assert row["samples_per_sec"] == pytest.approx(100 * row["steps_per_sec"])
        assert row["step_time"] * 14 <= row["epoch_time"]
    # 1400 images / 100 = 14 equal batches: the mean of the true batch losses is the epoch loss.
    assert [len(b) for b in monitor.batch_losses] == [14, 14]
    np.testing.assert_allclose(
        [np.mean(b) for b in monitor.batch_losses], history.history["loss"], rtol=1e-4
    )
    assert monitor.events == []


def test_history_files_written_at_train_end(fitted):
    monitor, history, log_dir, _ = fitted
    with open(os.path.join(log_dir, "history.json"), encoding="utf-8") as f:
        data = json.load(f)
    assert [row["epoch"] for row in data["epochs"]] == [1, 2]
    np.testing.assert_allclose([r["val_loss"] for r in data["epochs"]], history.history["val_loss"])
    assert len(data["batch_losses"]) == 2
    with open(os.path.join(log_dir, "history.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["epoch"])) for r in rows] == [1, 2]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], history.history["loss"])
    png = os.path.join(log_dir, "training_curves.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_config_round_trip_and_deepcopy(tmp_path):
    cb = TrainingMonitor(
        log_dir=str(tmp_path),
        monitor="val_loss",
        plateau_patience=2,
        batch_size=32,
        stop_on_divergence=True,
    )
    config = cb.get_config()
    assert TrainingMonitor(**config).get_config() == config
    clone = copy.deepcopy(cb)
    assert clone.get_config() == config
    assert not os.listdir(tmp_path)  # nothing written before on_train_begin


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"plateau_patience": 0}, ValueError, "Argument `plateau_patience` must be >= 1"),
        ({"divergence_factor": 1.0}, ValueError, "Argument `divergence_factor` must be > 1"),
        ({"spike_factor": "3"}, TypeError, "Argument `spike_factor` must be a number"),
        ({"spike_window": 4}, ValueError, "Argument `spike_window` must be >= 5"),
        ({"smoothing": 1.0}, ValueError, "Argument `smoothing` must be in"),
        ({"mode": "maximum"}, ValueError, "Argument `mode` must be one of"),
        ({"batch_size": 0}, ValueError, "Received: batch_size=0"),
        ({"log_dir": 5}, TypeError, "Argument `log_dir` must be a path"),
        ({"stop_on_divergence": "yes"}, TypeError, "must be a bool"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainingMonitor(**kwargs)


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    from keras_opt.backend import keras
    from keras_opt.callbacks import ActivationMonitor, GradientMonitor, NaNGuard, TrainingMonitor
    from tests.conftest import build_residual_cnn, compile_classifier
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None][:300]
    y = d.target[:300]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    class Sabotage(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1 and self.params is not None and not getattr(self, "done", False):
                self.done = True
                self.model.optimizer.learning_rate.assign(1e38)

    with strategy.scope():
        model = compile_classifier(build_residual_cnn(), keras.optimizers.SGD(0.05))
    cbs = [
        Sabotage(),
        TrainingMonitor(),
        GradientMonitor(probe=(x[:32], y[:32]), every_n_steps=2),
        ActivationMonitor(probe=x[:32]),
        NaNGuard(),
    ]
    h = model.fit(x, y, batch_size=50, epochs=1, callbacks=cbs, verbose=0)
    print("RESULT", json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "loss": h.history["loss"],
        "rescues": len(cbs[4].rescues),
        "divergence": [e["batch"] for e in cbs[1].events if e["kind"] == "divergence"],
        "grad_records": len(cbs[2].records),
        "grad_norm": cbs[2].records[-1]["grad_norm"],
        "act_records": len(cbs[3].records),
        "finite": bool(all(np.isfinite(w).all() for w in model.get_weights())),
    }))
    """
)


def test_all_monitors_under_mirrored_strategy_with_two_cpu_devices():
    result = run_script(_MIRRORED_SCRIPT, two_cpus=True)
    assert result["replicas"] == 2
    assert result["rescues"] == 1
    assert result["divergence"] == [2]
    assert result["finite"]
    assert all(math.isfinite(v) for v in result["loss"])
    assert result["grad_records"] >= 3
    assert math.isfinite(result["grad_norm"])
    assert result["act_records"] == 2


def test_training_monitors_example(tmp_path):
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "examples", "training_monitors.py")
    spec = importlib.util.spec_from_file_location("example_training_monitors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(out=str(tmp_path), epochs=1, samples=500)
    assert len(summary["rescues"]) == 1
    assert any("diverges" in e for e in summary["events"])
    assert {
        "history.json",
        "history.csv",
        "training_curves.png",
        "activation_histograms.png",
        "tb",
    } <= set(summary["files"])
    assert math.isfinite(summary["grad_norm"])
