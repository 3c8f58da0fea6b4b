"""Search-space helpers for schedules and compression."""

from __future__ import annotations

import keras_tuner as kt
import pytest

from keras_opt.schedules import CosineRestarts, OneCycle, WarmupDecay
from keras_opt.tuning import compression, learning_rate


@pytest.mark.parametrize(
    ("choice", "kind"),
    [
        ("constant", float),
        ("warmup_cosine", WarmupDecay),
        ("one_cycle", OneCycle),
        ("cosine_restarts", CosineRestarts),
    ],
)
def test_learning_rate_builds_the_chosen_schedule(choice, kind):
    hp = kt.HyperParameters()
    hp.Fixed("lr_schedule", choice)
    hp.Fixed("lr", 0.01)
    lr = learning_rate(hp, total_steps=100)
    assert isinstance(lr, kind)
    if kind is not float:
        assert lr.lr_at(0) <= 0.01 + 1e-12
        peak = max(lr.lr_at(t) for t in range(100))
        assert peak == pytest.approx(0.01, rel=1e-3)


def test_learning_rate_registers_log_sampled_peak():
    hp = kt.HyperParameters()
    learning_rate(hp, total_steps=10, min_lr=1e-4, max_lr=1e-1)
    lr_hp = hp.get_config()["space"]
    names = {h["config"]["name"]: h["config"] for h in lr_hp}
    assert names["lr"]["sampling"] == "log"
    assert (names["lr"]["min_value"], names["lr"]["max_value"]) == (1e-4, 1e-1)
    assert names["lr_schedule"]["values"] == [
        "constant",
        "warmup_cosine",
        "one_cycle",
        "cosine_restarts",
    ]


def test_compression_space():
    hp = kt.HyperParameters()
    cfg = compression(
        hp, sparsity=(0.5, 0.8), clusters=(8, 16), qat=None, layers=["conv.*", "dense"]
    )
    assert set(cfg) == {"target_sparsity", "number_of_clusters", "quantize", "layers"}
    assert 0.5 <= cfg["target_sparsity"] <= 0.8
    assert cfg["number_of_clusters"] in (8, 16)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda hp: learning_rate(hp, total_steps=1), r"`total_steps` must be >= 2"),
        (lambda hp: learning_rate(hp, 10, schedules=["linear"]), r"`schedules` must be one of"),
        (lambda hp: learning_rate(hp, 10, min_lr=0.1, max_lr=0.01), r"`max_lr` must be > min_lr"),
        (
            lambda hp: compression(hp, sparsity=(0.5, 1.0)),
            r"`sparsity\[1\]` must be in \[0.0, 1.0\)",
        ),
        (lambda hp: compression(hp, clusters=(1, 8)), r"`clusters` must be >= 2"),
    ],
)
def test_bad_search_space_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(kt.HyperParameters())
