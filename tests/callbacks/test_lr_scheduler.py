"""LRScheduler drives the optimizer from a schedule in a real fit."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

from keras_opt.backend import keras
from keras_opt.callbacks import LRScheduler, Plateau
from keras_opt.callbacks._optimizer_state import (
    DynamicFloat,
    ScheduledLearningRate,
    learning_rate_variable,
    release_schedule,
)
from keras_opt.schedules import CyclicalLR, OneCycle, WarmupDecay
from tests.conftest import build_sequential_cnn, compile_classifier

BATCH = 100  # 1400 training images -> 14 steps per epoch
STEPS = 14


def current_lr(opt):
    """The LR the optimizer will use for its next step (tf_keras' `learning_rate` lags by one)."""
    lr = opt._learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(opt.iterations))
    return float(np.asarray(lr))


class LRProbe(keras.callbacks.Callback):
    """Records the LR (and momentum) the optimizer will use for each batch."""

    def __init__(self, attr=None):
        super().__init__()
        self.attr = attr
        self.lrs, self.moms, self.iterations = [], [], []

    def on_train_batch_begin(self, batch, logs=None):
        opt = self.model.optimizer
        self.lrs.append(current_lr(opt))
        self.iterations.append(int(np.asarray(opt.iterations)))
        if self.attr:
            self.moms.append(float(getattr(opt, self.attr)))


@pytest.fixture(scope="module")
def data(digits):
    x_train, y_train, _, _ = digits
    return x_train, y_train


def _fit(model, data, callbacks, epochs=3, **kwargs):
    x, y = data
    return model.fit(
        x, y, batch_size=BATCH, epochs=epochs, callbacks=callbacks, verbose=0, **kwargs
    )


def test_lr_logged_by_real_fit_matches_formula_per_step(data):
    model = compile_classifier(build_sequential_cnn())
    schedule = WarmupDecay(peak_lr=0.01, epochs=3, warmup_epochs=1, decay="cosine")
    probe = LRProbe()
    history = _fit(model, data, [LRScheduler(schedule), probe])
    resolved = schedule.resolve(steps_per_epoch=STEPS)
    assert resolved.total_steps == 3 * STEPS
    assert probe.iterations == list(range(3 * STEPS))
    expected = [resolved.lr_at(t) for t in range(3 * STEPS)]
    np.testing.assert_allclose(probe.lrs, expected, rtol=1e-5, atol=1e-8)
    # Epoch logs (History) hold the LR of the epoch's last step.
    np.testing.assert_allclose(
        history.history["learning_rate"],
        [resolved.lr_at((e + 1) * STEPS - 1) for e in range(3)],
        rtol=1e-6,
    )


def test_length_taken_from_fit_when_schedule_has_none(data):
    model = compile_classifier(build_sequential_cnn())
    probe = LRProbe()
    _fit(model, data, [LRScheduler(OneCycle(max_lr=0.01)), probe], epochs=2)
    expected = OneCycle(max_lr=0.01, total_steps=2 * STEPS)
    np.testing.assert_allclose(
        probe.lrs, [expected.lr_at(t) for t in range(2 * STEPS)], rtol=1e-5, atol=1e-8
    )


@pytest.mark.parametrize(
    ("optimizer", "attr"),
    [
        (lambda: keras.optimizers.Adam(1e-3), "beta_1"),
        (lambda: keras.optimizers.SGD(1e-2, momentum=0.9), "momentum"),
    ],
)
def test_one_cycle_cycles_momentum_in_opposite_phase(data, optimizer, attr):
    model = compile_classifier(build_sequential_cnn(), optimizer())
    schedule = OneCycle(max_lr=0.01, epochs=2)
    probe = LRProbe(attr)
    history = _fit(model, data, [LRScheduler(schedule), probe], epochs=2)
    resolved = schedule.resolve(steps_per_epoch=STEPS)
    np.testing.assert_allclose(
        probe.moms, [resolved.momentum_at(t) for t in range(2 * STEPS)], rtol=1e-5, atol=1e-8
    )
    assert history.history[attr][-1] == pytest.approx(
        resolved.momentum_at(2 * STEPS - 1), rel=1e-5, abs=1e-8
    )
    # After fit the optimizer holds a plain float again, so its config saves.
    assert type(getattr(model.optimizer, attr)) is float
    keras.optimizers.serialize(model.optimizer)


def test_momentum_values_really_reach_the_update(data):
    """Two SGD runs: schedule-driven momentum equals a fixed one when the schedule is flat."""
    x, y = data
    flat = CyclicalLR(0.01, 0.0100001, step_size=5, base_momentum=0.5, max_momentum=0.5000001)
    a = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.01, momentum=0.9))
    a.fit(x, y, batch_size=BATCH, epochs=1, callbacks=[LRScheduler(flat)], verbose=0, shuffle=False)
    b = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.01, momentum=0.5))
    b.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-3, atol=1e-5)


def test_resume_with_initial_epoch_continues_the_schedule(data):
    schedule = WarmupDecay(peak_lr=0.01, epochs=4, warmup_epochs=1)
    resolved = schedule.resolve(steps_per_epoch=STEPS)
    model = compile_classifier(build_sequential_cnn())
    cb = LRScheduler(schedule)
    _fit(model, data, [cb], epochs=2)
    probe = LRProbe()
    history = _fit(model, data, [cb, probe], epochs=4, initial_epoch=2)
    assert probe.iterations[0] == 2 * STEPS
    np.testing.assert_allclose(
        probe.lrs, [resolved.lr_at(t) for t in range(2 * STEPS, 4 * STEPS)], rtol=1e-5, atol=1e-8
    )
    assert history.history["learning_rate"][-1] == pytest.approx(
        resolved.lr_at(4 * STEPS - 1), rel=1e-5, abs=1e-8
    )


def test_initial_epoch_on_fresh_optimizer_starts_at_that_epoch(data):
    schedule = WarmupDecay(peak_lr=0.01, epochs=4, warmup_epochs=1)
    resolved = schedule.resolve(steps_per_epoch=STEPS)
    model = compile_classifier(build_sequential_cnn())
    probe = LRProbe()
    _fit(model, data, [LRScheduler(schedule), probe], epochs=3, initial_epoch=2)
    assert probe.lrs[0] == pytest.approx(resolved.lr_at(2 * STEPS), rel=1e-5, abs=1e-8)


def test_steps_per_execution_sets_lr_at_the_right_step(data):
    model = build_sequential_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        steps_per_execution=2,
    )
    schedule = OneCycle(max_lr=0.01, epochs=1)
    history = _fit(model, data, [LRScheduler(schedule)], epochs=1)
    resolved = schedule.resolve(steps_per_epoch=STEPS)
    # Batch hooks run once per execution of 2 steps, but the LR is computed in the
    # train step itself, so every step gets its own value; the log holds the last one.
    assert history.history["learning_rate"][0] == pytest.approx(
        resolved.lr_at(STEPS - 1), rel=1e-5, abs=1e-8
    )
    assert float(model.optimizer.learning_rate) == pytest.approx(
        resolved.lr_at(STEPS - 1), rel=1e-5, abs=1e-8
    )


def test_plateau_scales_the_schedule_instead_of_fighting_it():
    plateau = Plateau("val_loss", factor=0.5, patience=2, min_delta=0.0)
    scale = 1.0
    for loss in [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.5]:
        scale = plateau.step({"val_loss": loss}, scale)
    assert scale == 0.25  # two plateaus of two epochs each
    plateau = Plateau("val_accuracy", factor=0.1, patience=1, min_scale=0.05)
    scale = 1.0
    for acc in [0.5, 0.4, 0.3, 0.2]:
        scale = plateau.step({"val_accuracy": acc}, scale)
    assert plateau.state.resolved_mode == "max"
    assert scale == pytest.approx(0.05)


def test_plateau_in_fit_multiplies_logged_lr(data):
    x, y = data
    model = compile_classifier(build_sequential_cnn())
    schedule = CyclicalLR(0.001, 0.002, step_size=STEPS)  # back at 0.001 every 2 epochs
    # monitor a constant metric -> never improves after the first epoch.
    cb = LRScheduler(schedule, plateau=Plateau("const", factor=0.5, patience=1, min_delta=0.0))

    class Const(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["const"] = 1.0

    probe = LRProbe()
    model.fit(x, y, batch_size=BATCH, epochs=3, callbacks=[Const(), cb, probe], verbose=0)
    # epoch 0: scale 1; after epoch 1 end: scale 0.5 (one epoch without improvement).
    assert probe.lrs[0] == pytest.approx(0.001, rel=1e-5, abs=1e-8)
    assert probe.lrs[2 * STEPS] == pytest.approx(
        0.5 * schedule.lr_at(2 * STEPS), rel=1e-5, abs=1e-8
    )


def test_missing_plateau_metric_warns_with_available_keys():
    plateau = Plateau("val_los")
    with pytest.warns(UserWarning, match=r"`val_los` is not in the logs.*'loss', 'val_loss'"):
        plateau.step({"loss": 1.0, "val_loss": 1.0}, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plateau.step({"loss": 1.0}, 1.0)  # warned once only


def test_deepcopy_and_config_round_trip():
    cb = LRScheduler(OneCycle(max_lr=0.01, epochs=3), plateau=Plateau("val_loss", patience=3))
    clone = copy.deepcopy(cb)
    assert clone.schedule == cb.schedule
    assert clone.plateau is not cb.plateau
    again = LRScheduler.from_config(cb.get_config())
    assert again.schedule == cb.schedule
    assert again.plateau.get_config() == cb.plateau.get_config()
    assert again.get_config() == cb.get_config()


def test_callback_is_reusable_across_fits(data):
    cb = LRScheduler(OneCycle(max_lr=0.01))
    for _ in range(2):
        model = compile_classifier(build_sequential_cnn())
        probe = LRProbe()
        _fit(model, data, [cb, probe], epochs=1)
        assert probe.lrs[0] == pytest.approx(
            OneCycle(max_lr=0.01, total_steps=STEPS).lr_at(0), rel=1e-5
        )


def test_optimizer_with_schedule_object_gets_clear_error(data):
    model = compile_classifier(
        build_sequential_cnn(), keras.optimizers.Adam(OneCycle(0.01, total_steps=10))
    )
    with pytest.raises(
        TypeError, match=r"created with a schedule object \(OneCycle\).*float learning rate"
    ):
        _fit(model, data, [LRScheduler(OneCycle(max_lr=0.01))], epochs=1)


class _Crash(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        raise RuntimeError("crash")


def test_schedule_left_by_a_crashed_fit_is_released_only_on_request(data):
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.Adam(0.01))
    variable = model.optimizer._learning_rate
    with pytest.raises(RuntimeError, match="crash"):  # on_train_end never runs
        _fit(model, data, [LRScheduler(OneCycle(max_lr=0.01)), _Crash()], epochs=1)
    left = model.optimizer._learning_rate
    assert isinstance(left, ScheduledLearningRate)
    with pytest.raises(TypeError, match="schedule object"):
        learning_rate_variable(model.optimizer, "test")  # reading changes nothing
    assert model.optimizer._learning_rate is left
    release_schedule(model.optimizer)
    assert model.optimizer._learning_rate is variable
    assert learning_rate_variable(model.optimizer, "test") is variable
    probe = LRProbe()  # and the next fit starts cleanly
    _fit(model, data, [LRScheduler(OneCycle(max_lr=0.01)), probe], epochs=1)
    assert len(probe.lrs) == STEPS
    assert model.optimizer._learning_rate is variable


def test_momentum_cycling_on_sgd_without_momentum_is_an_error(data):
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.01))
    cb = LRScheduler(OneCycle(max_lr=0.01), cycle_momentum=True)
    with pytest.raises(ValueError, match=r"Cannot cycle momentum: optimizer SGD.*momentum=0"):
        _fit(model, data, [cb], epochs=1)
    # "auto" quietly skips momentum and still schedules the LR.
    probe = LRProbe()
    history = _fit(model, data, [LRScheduler(OneCycle(max_lr=0.01)), probe], epochs=1)
    assert "momentum" not in history.history
    assert len(probe.lrs) == STEPS


def test_cycle_momentum_true_needs_a_momentum_schedule():
    cb = LRScheduler(WarmupDecay(0.1, total_steps=10), cycle_momentum=True)
    model = compile_classifier(build_sequential_cnn())
    cb.set_model(model)
    with pytest.raises(ValueError, match=r"defines no momentum cycle"):
        cb.on_train_begin()


def test_unsized_dataset_needs_steps_per_epoch():
    import tensorflow as tf

    model = compile_classifier(build_sequential_cnn())
    ds = tf.data.Dataset.from_tensors(
        (np.zeros((8, 8, 8, 1), "float32"), np.zeros(8, "int64"))
    ).repeat()
    cb = LRScheduler(OneCycle(max_lr=0.01, epochs=2))
    cb.set_model(model)
    cb.set_params({"epochs": 2, "steps": None, "verbose": 0})
    with pytest.raises(ValueError, match=r"Pass `steps_per_epoch=`"):
        cb.on_train_begin()
    del ds


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"schedule": 0.1}, TypeError, r"`schedule` must be a keras_opt schedule"),
        ({"schedule": lambda step: 0.1}, TypeError, r"evaluated in-graph"),
        (
            {"schedule": OneCycle(0.1), "cycle_momentum": "yes"},
            ValueError,
            r"`cycle_momentum` must be 'auto', True or False",
        ),
        (
            {"schedule": OneCycle(0.1), "plateau": "val_loss"},
            TypeError,
            r"`plateau` must be a keras_opt.callbacks.Plateau",
        ),
        ({"schedule": OneCycle(0.1), "verbose": -1}, ValueError, r"`verbose` must be >= 0"),
    ],
)
def test_bad_scheduler_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LRScheduler(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"factor": 1.0}, r"`factor` must be in \(0.0, 1.0\). Received: factor=1.0"),
        ({"patience": 0}, r"`patience` must be >= 1"),
        ({"mode": "auto_"}, r"`mode` must be one of 'auto', 'min', 'max'"),
        ({"min_scale": 0}, r"`min_scale` must be in \(0.0, 1.0\]"),
    ],
)
def test_bad_plateau_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Plateau(**kwargs)


def test_momentum_is_read_once_per_traced_graph_outside_control_dependencies():
    import tensorflow as tf

    variable = tf.Variable(0.9)
    beta = DynamicFloat(0.9, lambda: tf.constant(0.8), variable)
    seen = {}

    @tf.function
    def step():
        with tf.control_dependencies([tf.no_op()]):
            scoped = tf.convert_to_tensor(beta)  # carries the scope: not shared
        first, second = tf.convert_to_tensor(beta), beta * 2.0
        seen["scoped"] = scoped is first
        seen["shared"] = first is second.op.inputs[0]
        return first + second

    assert float(step()) == pytest.approx(0.9 * 3)
    assert seen == {"shared": True, "scoped": False}
    variable.assign(0.5)
    assert float(step()) == pytest.approx(0.5 * 3)  # the read runs at every call
    assert float(beta) == pytest.approx(0.8)  # eagerly: the schedule's value
