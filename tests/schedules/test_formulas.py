"""Schedules equal their closed-form formulas, in Python and in-graph."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from keras_opt.backend import keras
from keras_opt.schedules import CosineRestarts, CyclicalLR, OneCycle, Schedule, WarmupDecay

STEPS = [0, 1, 7, 10, 11, 33, 55, 99, 100, 150]


def _cos(start, end, p):
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * p))


def warmup_decay_ref(
    t, decay, peak=0.1, final=0.001, total=100, warmup=10, rate=0.5, d=None, power=2.0
):
    if t < warmup:
        return peak * t / warmup
    p = min(max((t - warmup) / (total - warmup), 0.0), 1.0)
    if decay == "cosine":
        return _cos(peak, final, p)
    if decay == "linear":
        return peak + (final - peak) * p
    if decay == "polynomial":
        return (peak - final) * (1 - p) ** power + final
    elapsed = min(t - warmup, total - warmup)
    d = d or (total - warmup)
    if decay == "exponential":
        return max(final, peak * rate ** (elapsed / d))
    return max(final, peak * rate ** math.floor(elapsed / d))


@pytest.mark.parametrize("decay", ["cosine", "linear", "polynomial", "exponential", "step"])
def test_warmup_decay_matches_formula(decay):
    kwargs = {"decay_steps": 20} if decay == "step" else {}
    s = WarmupDecay(
        peak_lr=0.1,
        decay=decay,
        total_steps=100,
        warmup_steps=10,
        final_lr=0.001,
        decay_rate=0.5,
        power=2.0,
        **kwargs,
    )
    for t in STEPS:
        expected = warmup_decay_ref(t, decay, d=kwargs.get("decay_steps"))
        assert s.lr_at(t) == pytest.approx(expected, rel=1e-12, abs=1e-15), t
        assert float(s(t)) == pytest.approx(expected, rel=1e-5, abs=1e-8), t


def test_warmup_decay_in_epochs_resolves_with_steps_per_epoch():
    s = WarmupDecay(peak_lr=0.1, epochs=10, warmup_epochs=1)
    assert not s.is_resolved()
    r = s.resolve(steps_per_epoch=10)
    assert (r.total_steps, r.warmup_steps) == (100, 10)
    same = WarmupDecay(peak_lr=0.1, total_steps=100, warmup_steps=10)
    assert [r.lr_at(t) for t in STEPS] == [same.lr_at(t) for t in STEPS]


def test_warmup_start_lr_and_keras_cosine_decay_agree():
    # Keras' CosineDecay with warmup is our cosine case with final_lr = alpha * peak.
    ref = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.01,
        decay_steps=90,
        alpha=0.1,
        warmup_target=0.1,
        warmup_steps=10,
    )
    ours = WarmupDecay(
        peak_lr=0.1, total_steps=100, warmup_steps=10, warmup_start_lr=0.01, final_lr=0.01
    )
    for t in STEPS:
        assert ours.lr_at(t) == pytest.approx(float(ref(t)), rel=1e-5), t


def sgdr_ref(t, peak, t0, mult, peak_mult, low):
    i, start, period = 0, 0.0, t0
    while t >= start + period:
        start += period
        period *= mult
        i += 1
    p = (t - start) / period
    return _cos(peak * peak_mult**i, low, p)


@pytest.mark.parametrize(("mult", "peak_mult"), [(1.0, 1.0), (2.0, 1.0), (2.0, 0.5), (1.5, 0.8)])
def test_cosine_restarts_matches_formula(mult, peak_mult):
    s = CosineRestarts(
        0.1, first_period_steps=10, period_mult=mult, peak_mult=peak_mult, min_lr=0.001
    )
    for t in [0, 3, 9, 10, 14, 29, 30, 31, 69, 70, 149, 150, 200]:
        expected = sgdr_ref(t, 0.1, 10, mult, peak_mult, 0.001)
        assert s.lr_at(t) == pytest.approx(expected, rel=1e-9), t
        assert float(s(t)) == pytest.approx(expected, rel=1e-4, abs=1e-7), t


def test_cosine_restarts_restarts_at_period_boundaries():
    s = CosineRestarts(0.1, first_period_steps=10, period_mult=2.0)
    assert [s.lr_at(t) for t in (0, 10, 30, 70)] == pytest.approx([0.1] * 4)
    assert s.lr_at(9) < 0.01
    assert s.lr_at(29) < 0.01


def test_one_cycle_matches_formula():
    s = OneCycle(max_lr=0.01, total_steps=100, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    start, end = 0.01 / 25, 0.01 / 25 / 1e4
    for t in STEPS:
        if t < 30:
            lr, mom = _cos(start, 0.01, t / 30), _cos(0.95, 0.85, t / 30)
        else:
            p = min((t - 30) / 70, 1.0)
            lr, mom = _cos(0.01, end, p), _cos(0.85, 0.95, p)
        assert s.lr_at(t) == pytest.approx(lr, rel=1e-9), t
        assert s.momentum_at(t) == pytest.approx(mom, rel=1e-9), t
        assert float(s(t)) == pytest.approx(lr, rel=1e-4), t
    # LR and momentum move in opposite phase.
    assert s.lr_at(30) == pytest.approx(0.01)
    assert s.momentum_at(30) == pytest.approx(0.85)
    assert s.momentum_at(0) == pytest.approx(0.95)
    assert s.momentum_at(100) == pytest.approx(0.95)


def test_one_cycle_linear_anneal():
    s = OneCycle(max_lr=1.0, total_steps=10, pct_start=0.5, div_factor=10, anneal="linear")
    assert s.lr_at(0) == pytest.approx(0.1)
    assert s.lr_at(2.5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s.lr_at(5) == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclical_matches_tensorflow_addons_formula(mode):
    base, high, size, gamma = 0.001, 0.006, 10, 0.99
    s = CyclicalLR(
        base, high, step_size=size, mode=mode, gamma=gamma, base_momentum=0.8, max_momentum=0.9
    )
    for t in [0, 3, 10, 15, 20, 25, 30, 47, 60]:
        cycle = math.floor(1 + t / (2 * size))
        x = abs(t / size - 2 * cycle + 1)
        scale = {"triangular": 1.0, "triangular2": 1 / 2 ** (cycle - 1), "exp_range": gamma**t}[
            mode
        ]
        wave = max(0.0, 1 - x) * scale
        assert s.lr_at(t) == pytest.approx(base + (high - base) * wave, rel=1e-12), t
        assert s.momentum_at(t) == pytest.approx(0.9 - 0.1 * wave, rel=1e-12), t
        assert float(s(t)) == pytest.approx(base + (high - base) * wave, rel=1e-5), t


ALL = [
    WarmupDecay(peak_lr=0.1, total_steps=100, warmup_steps=10, decay="exponential"),
    WarmupDecay(peak_lr=0.1, epochs=3, warmup_epochs=1, steps_per_epoch=7),
    CosineRestarts(0.1, first_period_epochs=2, steps_per_epoch=5, warmup_steps=3),
    OneCycle(max_lr=0.1, total_steps=50),
    CyclicalLR(0.01, 0.1, step_size=5, mode="triangular2"),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_config_round_trip_and_deepcopy(schedule):
    clone = type(schedule).from_config(schedule.get_config())
    assert clone == schedule
    copied = copy.deepcopy(schedule)
    assert copied == schedule
    assert copied is not schedule
    serialized = keras.optimizers.schedules.serialize(schedule)
    restored = keras.optimizers.schedules.deserialize(serialized)
    assert type(restored) is type(schedule)
    for t in (0, 3, 17, 40):
        assert restored.lr_at(t) == schedule.lr_at(t)


def test_schedule_in_optimizer_survives_keras_save_and_load(tmp_path):
    schedule = OneCycle(max_lr=0.01, total_steps=20)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    x = np.random.RandomState(0).rand(32, 4).astype("float32")
    model.fit(x, x[:, :2], epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    lr = loaded.optimizer._learning_rate
    assert isinstance(lr, OneCycle)
    assert lr == schedule


def test_in_graph_schedule_trains_and_follows_optimizer_step():
    schedule = WarmupDecay(peak_lr=0.05, total_steps=8, warmup_steps=4)
    opt = keras.optimizers.SGD(schedule)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=opt, loss="mse")
    x = np.ones((16, 3), "float32")
    model.fit(x, np.zeros((16, 1)), epochs=1, batch_size=4, verbose=0)
    assert int(opt.iterations) == 4
    assert float(schedule(opt.iterations)) == pytest.approx(schedule.lr_at(4), rel=1e-6)


# ----- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (
            lambda: WarmupDecay(peak_lr=0.0, total_steps=10),
            r"`peak_lr` must be > 0. Received: peak_lr=0.0",
        ),
        (lambda: WarmupDecay(peak_lr=-1e-3, total_steps=10), r"`peak_lr` must be > 0"),
        (
            lambda: WarmupDecay(peak_lr=0.1, total_steps=10, warmup_steps=10),
            r"warmup must be shorter than the run. Received: warmup_steps=10",
        ),
        (
            lambda: WarmupDecay(peak_lr=0.1, epochs=2, warmup_epochs=3, steps_per_epoch=5),
            r"warmup_epochs=3",
        ),
        (
            lambda: WarmupDecay(peak_lr=0.1, total_steps=10, final_lr=0.2),
            r"`final_lr` must be < peak_lr=0.1. Received: final_lr=0.2",
        ),
        (
            lambda: WarmupDecay(peak_lr=0.1, total_steps=10, decay="cosin"),
            r"`decay` must be one of .*Received: decay='cosin'",
        ),
        (lambda: WarmupDecay(peak_lr=0.1, total_steps=10, decay="step"), r"decay_steps"),
        (
            lambda: WarmupDecay(peak_lr=0.1, total_steps=10, epochs=3),
            r"only one of `total_steps` and `epochs`",
        ),
        (
            lambda: WarmupDecay(peak_lr=0.1, total_steps=0),
            r"`total_steps` must be >= 1. Received: total_steps=0",
        ),
        (
            lambda: WarmupDecay(peak_lr=0.1, total_steps=10, decay_rate=1.5),
            r"`decay_rate` must be in \(0.0, 1.0\)",
        ),
        (
            lambda: CyclicalLR(0.1, 0.01, step_size=5),
            r"`max_lr` must be > base_lr=0.1. Received: max_lr=0.01",
        ),
        (lambda: CyclicalLR(0.01, 0.1, step_size=5, mode="sine"), r"`mode` must be one of"),
        (
            lambda: CyclicalLR(0.01, 0.1, step_size=5, base_momentum=0.8),
            r"both `base_momentum` and `max_momentum`",
        ),
        (lambda: CyclicalLR(0.01, 0.1), r"one of `step_size` or `step_size_epochs`"),
        (
            lambda: CosineRestarts(0.1, first_period_steps=10, min_lr=0.5),
            r"`min_lr` must be < peak_lr",
        ),
        (
            lambda: CosineRestarts(0.1, first_period_steps=10, period_mult=0.5),
            r"`period_mult` must be >= 1",
        ),
        (
            lambda: OneCycle(max_lr=0.1, total_steps=10, pct_start=1.0),
            r"`pct_start` must be in \(0.0, 1.0\)",
        ),
        (
            lambda: OneCycle(max_lr=0.1, total_steps=10, base_momentum=0.99, max_momentum=0.9),
            r"`max_momentum` must be >= base_momentum=0.99",
        ),
        (
            lambda: OneCycle(max_lr=0.1, total_steps=10, anneal="cosine"),
            r"`anneal` must be one of 'cos', 'linear'",
        ),
    ],
)
def test_bad_arguments_name_the_argument_and_value(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_non_number_lr_is_a_type_error():
    with pytest.raises(TypeError, match=r"`max_lr` must be a number. Received: max_lr='0.1'"):
        OneCycle(max_lr="0.1", total_steps=10)


def test_epochs_without_steps_per_epoch_says_how_to_fix():
    s = OneCycle(max_lr=0.1, epochs=5)
    with pytest.raises(ValueError, match=r"steps_per_epoch.*LRScheduler"):
        s.lr_at(0)
    with pytest.raises(ValueError, match=r"no known length"):
        OneCycle(max_lr=0.1).lr_at(0)


def test_every_schedule_is_a_keras_learning_rate_schedule():
    for s in ALL:
        assert isinstance(s, Schedule)
        assert isinstance(s, keras.optimizers.schedules.LearningRateSchedule)
