"""`keras_opt._state`: one way to read, snapshot and restore model and optimizer state."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_opt._state import (
    ModelSnapshot,
    VariableSnapshot,
    optimizer_variables,
    read_float,
    read_value,
)
from keras_opt.backend import keras
from tests.conftest import build_residual_cnn, compile_classifier


def _optimizer_values(model):
    return [read_value(v) for v in optimizer_variables(model.optimizer)]


def _equal(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_read_value_copies_variables_tensors_and_numbers():
    var = tf.Variable([1.0, 2.0])
    value = read_value(var)
    var.assign([5.0, 6.0])
    assert value.tolist() == [1.0, 2.0]
    assert read_value(tf.constant(3)).dtype == np.int32
    assert read_float(np.float64(0.25)) == 0.25
    assert read_float(var[0]) == 5.0


def test_variable_snapshot_restores_each_variable_once():
    a, b = tf.Variable(1.0), tf.Variable([2.0, 3.0])
    snap = VariableSnapshot.take([a, b, a])
    assert len(snap.variables) == 2
    a.assign(9.0)
    b.assign([0.0, 0.0])
    snap.restore()
    assert read_float(a) == 1.0
    assert read_value(b).tolist() == [2.0, 3.0]
    assert snap.holds(a)
    assert not snap.holds(tf.Variable(1.0))


def test_model_snapshot_restores_weights_optimizer_and_lr_bit_for_bit(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_residual_cnn())
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)  # Adam state, BN stats
    weights, slots = model.get_weights(), _optimizer_values(model)
    snap = ModelSnapshot.take(model)
    model.optimizer.learning_rate.assign(0.5)
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    assert not _equal(weights, model.get_weights())
    snap.restore()
    assert _equal(weights, model.get_weights())
    assert _equal(slots, _optimizer_values(model))
    assert read_float(model.optimizer.learning_rate) == pytest.approx(1e-3)


def test_model_snapshot_of_unbuilt_optimizer_leaves_a_fresh_one(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_residual_cnn())
    weights = model.get_weights()
    count = len(optimizer_variables(model.optimizer))
    snap = ModelSnapshot.take(model)
    assert len(optimizer_variables(model.optimizer)) == count  # taking builds nothing
    model.train_on_batch(x[:32], y[:32])
    assert len(optimizer_variables(model.optimizer)) > count
    snap.restore()
    assert _equal(weights, model.get_weights())
    assert int(read_float(model.optimizer.iterations)) == 0
    assert all(not np.any(v) for v in _optimizer_values(model) if v.ndim > 0)


def test_optimizer_variables_include_the_lr_in_both_flavors():
    optimizer = keras.optimizers.SGD(0.1)
    lr = optimizer._learning_rate
    found = optimizer_variables(optimizer)
    assert sum(v is lr for v in found) == 1
    assert optimizer_variables(None) == []
