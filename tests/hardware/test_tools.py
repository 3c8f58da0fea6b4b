"""Batch-size finder (simulated OOM), input-pipeline check, profiler."""

from __future__ import annotations

import glob
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_opt import hardware
from keras_opt.hardware import profiling
from tests.conftest import build_residual_cnn, compile_classifier


@pytest.fixture(scope="module")
def model():
    return compile_classifier(build_residual_cnn())


def _oom_above(monkeypatch, model, limit, calls):
    """Make train_on_batch raise ResourceExhaustedError for batches >= limit samples."""
    real = model.train_on_batch

    def step(x, y=None, *args, **kwargs):
        calls.append(len(x))
        if len(x) >= limit:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return real(x, y, *args, **kwargs)

    monkeypatch.setattr(model, "train_on_batch", step)


def test_batch_size_finder_recovers_from_oom_and_reports(digits, model, monkeypatch):
    x, y, _, _ = digits
    before = [w.copy() for w in model.get_weights()]
    calls = []
    _oom_above(monkeypatch, model, 64, calls)
    result = hardware.find_batch_size(model, x, y, init_batch_size=8, steps=1)
    assert [(t.per_replica_batch_size, t.fits) for t in result.trials] == [
        (8, True),
        (16, True),
        (32, True),
        (64, False),
    ]
    assert result.per_replica_batch_size == 32
    assert result.global_batch_size == 32
    assert all(t.samples_per_second > 0 for t in result.trials if t.fits)
    assert result.trials[-1].samples_per_second is None
    assert result.fastest_per_replica_batch_size in (8, 16, 32)
    assert result.learning_rate_scale == 4.0  # 32 / base batch 8 (linear rule)
    assert result.suggested_learning_rate == pytest.approx(4e-3)  # Adam 1e-3 × 4
    for a, b in zip(
        before, model.get_weights(), strict=True
    ):  # the search left the model as it was
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    loss = model.train_on_batch(x[:32], y[:32])  # and it still trains
    assert np.all(np.isfinite(loss))


def test_batch_size_finder_binsearch_refines_between_fit_and_oom(digits, model, monkeypatch):
    x, y, _, _ = digits
    calls = []
    _oom_above(monkeypatch, model, 48, calls)
    result = hardware.find_batch_size(
        model, x, y, init_batch_size=8, steps=1, mode="binsearch", base_batch_size=16
    )
    sizes = [t.per_replica_batch_size for t in result.trials]
    assert sizes == [8, 16, 32, 64, 48, 40, 44, 46, 47]
    assert result.per_replica_batch_size == 47
    assert result.learning_rate_scale == pytest.approx(47 / 16)


def test_batch_size_finder_stops_at_max_and_propagates_other_errors(digits, model, monkeypatch):
    x, y, _, _ = digits
    result = hardware.find_batch_size(model, x, y, init_batch_size=4, max_batch_size=12, steps=1)
    assert [t.per_replica_batch_size for t in result.trials] == [4, 8, 12]

    def broken(*args, **kwargs):
        raise ValueError("shape mismatch")

    monkeypatch.setattr(model, "train_on_batch", broken)
    with pytest.raises(ValueError, match="shape mismatch"):
        hardware.find_batch_size(model, x, y, steps=1)


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"init_batch_size": 0}, ValueError, "Argument `init_batch_size` must be >= 1"),
        ({"max_batch_size": 4}, ValueError, "Argument `max_batch_size` must be >= 8"),
        ({"mode": "linear"}, ValueError, "Argument `mode` must be one of 'power', 'binsearch'"),
        ({"y": np.zeros(3)}, ValueError, "Argument `y` must be as long as x"),
    ],
)
def test_batch_size_finder_argument_errors(digits, model, kwargs, exc, fragment):
    x, y, _, _ = digits
    kwargs = {"y": y, **kwargs}
    with pytest.raises(exc, match=fragment):
        hardware.find_batch_size(model, x, **kwargs)


def _batches(digits, batch=32):
    x, y, _, _ = digits
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def test_input_check_says_input_bound_for_slow_dataset(digits, model):
    def slow(x, y):
        def sleep(t):
            time.sleep(0.05)
            return t

        x = tf.py_function(sleep, [x], tf.float32)
        x.set_shape([None, 8, 8, 1])
        return x, y

    before = [w.copy() for w in model.get_weights()]
    report = hardware.check_input_pipeline(model, _batches(digits).map(slow), steps=4, warmup=1)
    assert report.input_bound
    assert report.verdict.startswith("Input-bound")
    assert "prefetch(tf.data.AUTOTUNE)" in report.verdict
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_input_check_says_compute_bound_for_cached_prefetched_dataset(digits, model):
    fast = _batches(digits, 256).cache().repeat().prefetch(tf.data.AUTOTUNE)
    report = hardware.check_input_pipeline(model, fast, steps=4, warmup=2)
    assert not report.input_bound
    assert report.verdict.startswith("Not input-bound")


def test_input_check_errors(digits, model):
    with pytest.raises(ValueError, match="Argument `dataset` must be at least warmup"):
        hardware.check_input_pipeline(model, _batches(digits).take(2), steps=5)
    with pytest.raises(TypeError, match="Argument `dataset` must be a batched tf.data.Dataset"):
        hardware.check_input_pipeline(model, [1, 2])
    with pytest.raises(ValueError, match="Argument `steps` must be >= 1"):
        hardware.check_input_pipeline(model, _batches(digits), steps=0)


def test_profiler_without_plugin_gives_install_hint(digits, model, monkeypatch):
    monkeypatch.setattr(profiling, "profiler_plugin_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install keras-opt\[profile\]"):
        hardware.profile_steps(model, _batches(digits))


def test_profiler_writes_a_trace_of_n_steps(digits, model, tmp_path):
    before = [w.copy() for w in model.get_weights()]
    run_dir = hardware.profile_steps(
        model, _batches(digits), steps=2, warmup=1, logdir=str(tmp_path), require_plugin=False
    )
    assert run_dir.startswith(os.path.join(str(tmp_path), "plugins", "profile"))
    traces = glob.glob(os.path.join(run_dir, "*.xplane.pb"))
    assert traces
    assert os.path.getsize(traces[0]) > 0
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
