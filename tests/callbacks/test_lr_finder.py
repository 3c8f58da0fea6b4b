"""The LR range test: true batch loss, exact restore, useful suggestions."""

from __future__ import annotations

import numpy as np
import pytest

from keras_opt.backend import keras
from keras_opt.callbacks import LRFinder, find_lr
from keras_opt.callbacks._batch_loss import BatchLossUnroller, SmoothedLoss
from keras_opt.callbacks._lr_suggestions import suggest
from keras_opt.schedules import OneCycle
from tests.conftest import build_residual_cnn, build_sequential_cnn, compile_classifier


def _optimizer_values(model):
    return [np.array(v.numpy() if hasattr(v, "numpy") else v) for v in model.optimizer.variables]


def test_finder_restores_weights_and_optimizer_state_bit_for_bit(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_residual_cnn())
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)  # non-trivial Adam state and BN stats
    weights = [w.copy() for w in model.get_weights()]
    opt_state = _optimizer_values(model)
    lr = float(np.asarray(model.optimizer.learning_rate))
    result = find_lr(model, x, y, num_steps=30, end_lr=1.0)
    assert len(result.lrs) >= 5
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(weights, after, strict=True))
    assert all(
        np.array_equal(a, b) for a, b in zip(opt_state, _optimizer_values(model), strict=True)
    )
    assert float(np.asarray(model.optimizer.learning_rate)) == lr


def test_finder_on_fresh_model_leaves_a_fresh_optimizer(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn())
    weights = [w.copy() for w in model.get_weights()]
    find_lr(model, x, y, num_steps=20, end_lr=1.0)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    assert int(np.asarray(model.optimizer.iterations)) == 0
    assert all(not np.any(v) for v in _optimizer_values(model)[1:] if v.ndim > 0)


def test_sweep_is_exponential_and_records_true_batch_loss(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn())
    finder = LRFinder(start_lr=1e-5, end_lr=1e-1, num_steps=20, diverge_threshold=100.0)
    history = model.fit(
        x[:640], y[:640], batch_size=32, epochs=1, callbacks=[finder], verbose=0, shuffle=False
    )
    r = finder.result
    np.testing.assert_allclose(r.lrs, [1e-5 * (1e4) ** (i / 19) for i in range(20)], rtol=1e-9)
    ema = SmoothedLoss(0.98)
    assert r.smoothed_losses == pytest.approx([ema.update(loss) for loss in r.losses])
    # The 20 true batch losses average back to Keras' epoch loss (a running mean).
    assert np.mean(r.losses) == pytest.approx(history.history["loss"][0], rel=1e-5)


def test_unrolled_batch_losses_reproduce_keras_running_mean(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn())

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.unroller, self.means, self.losses = BatchLossUnroller(), [], []

        def on_train_batch_end(self, batch, logs=None):
            self.means.append(float(logs["loss"]))
            self.losses.append(self.unroller.update(batch, logs["loss"]))

    rec = Recorder()
    model.fit(x[:640], y[:640], batch_size=64, epochs=1, callbacks=[rec], verbose=0)
    cumulative = np.cumsum(rec.losses) / np.arange(1, len(rec.losses) + 1)
    np.testing.assert_allclose(cumulative, rec.means, rtol=1e-5)
    # and the per-batch values are not the running mean (training moves them).
    assert not np.allclose(rec.losses, rec.means)


def test_unroller_with_steps_per_execution_gaps():
    u = BatchLossUnroller()
    assert u.update(1, 3.0) == 3.0  # batches 0-1, mean 3
    assert u.update(3, 2.0) == pytest.approx((4 * 2.0 - 2 * 3.0) / 2)
    assert u.update(0, 5.0) == 5.0  # new epoch resets


def test_divergence_stops_the_sweep_early(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.01))
    result = find_lr(model, x, y, start_lr=1e-3, end_lr=1e4, num_steps=60)
    assert result.diverged
    assert len(result.lrs) < 60


def test_suggestion_rules_on_a_known_curve():
    lrs = list(np.logspace(-6, 0, 61))
    # loss falls steepest around 1e-3, minimum at 1e-2, then explodes.
    logs = np.log10(lrs)
    loss = 2.0 - 1.5 / (1 + np.exp(-(logs + 3) * 3)) + np.where(logs > -2, (logs + 2) ** 2 * 5, 0)
    s = suggest(lrs, list(loss))
    i_min = int(np.argmin(loss))
    assert s["minimum"] == pytest.approx(lrs[i_min] / 10)
    assert s["steepest"] == pytest.approx(1e-3, rel=0.3)
    assert lrs[0] < s["valley"] < lrs[i_min]


def test_suggested_lr_trains_cnn_to_95_percent(digits, tmp_path):
    x, y, x_test, y_test = digits
    model = compile_classifier(build_sequential_cnn())
    result = find_lr(model, x, y, num_steps=100, plot=tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000
    assert result.rule == "valley"
    assert 1e-5 < result.suggested_lr < 1.0
    model.optimizer.learning_rate = result.suggested_lr
    model.fit(x, y, batch_size=32, epochs=10, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.95


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"start_lr": 0}, ValueError, r"`start_lr` must be > 0. Received: start_lr=0"),
        ({"start_lr": 1.0, "end_lr": 0.1}, ValueError, r"`end_lr` must be > start_lr=1.0"),
        ({"num_steps": 3}, ValueError, r"`num_steps` must be >= 5. Received: num_steps=3"),
        ({"rule": "fastest"}, ValueError, r"`rule` must be one of 'valley', 'steepest', 'minimum'"),
        ({"diverge_threshold": 1.0}, ValueError, r"`diverge_threshold` must be > 1"),
    ],
)
def test_bad_finder_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LRFinder(**kwargs)


def test_find_lr_input_errors(digits):
    x, y, _, _ = digits
    uncompiled = build_sequential_cnn()
    with pytest.raises(ValueError, match=r"needs a compiled model"):
        find_lr(uncompiled, x, y)
    model = compile_classifier(build_sequential_cnn())
    with pytest.raises(ValueError, match=r"`y` is required"):
        find_lr(model, x)
    with pytest.raises(ValueError, match=r"`batch_size` must be <= the number of samples \(10\)"):
        find_lr(model, x[:10], y[:10], batch_size=32)
    scheduled = compile_classifier(
        build_sequential_cnn(), keras.optimizers.Adam(OneCycle(0.01, total_steps=5))
    )
    with pytest.raises(TypeError, match=r"schedule object"):
        find_lr(scheduled, x, y)
    with pytest.raises(TypeError, match=r"`model` must be a .*keras.Model"):
        find_lr("model.keras", x, y)
