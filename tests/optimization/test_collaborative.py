"""Collaborative optimization: each stage's result survives the next.

TFMOT's schemes are checked here (tf_keras); the native engine's PCQAT is checked
from the int8 file in test_native_qat.py. Argument checks run in both flavors.
"""

from __future__ import annotations

import numpy as np
import pytest

import keras_opt.optimization as kopt
from tests.conftest import build_sequential_cnn

KERNELS = ("stem", "res_conv", "head")


@pytest.fixture(scope="module")
def pcqat(trained_residual, digits):
    x, y, _, _ = digits
    return kopt.collaborative(
        trained_residual,
        x[:512],
        y[:512],
        recipe="pcqat",
        target_sparsity=0.5,
        number_of_clusters=16,
        epochs=1,
        batch_size=64,
    )


@pytest.mark.tf_keras_only
def test_pcqat_keeps_sparsity_and_clusters_through_qat(pcqat):
    report = kopt.compression_summary(pcqat)
    rows = [row for row in report.layers if row.weights]
    assert len(rows) == len(KERNELS)
    for row in rows:
        assert row.quantized
        assert row.sparsity == pytest.approx(0.5, abs=0.01)
        assert row.unique_values <= 16
    stripped = kopt.strip(pcqat)
    for name in KERNELS:
        kernel = stripped.get_layer(name).get_weights()[0]
        assert float(np.mean(kernel == 0)) == pytest.approx(0.5, abs=0.01)
        assert np.unique(kernel).size <= 16


def test_pqat_recipe_keeps_the_sparsity_through_qat(digits, trained_residual):
    """Both engines: the QAT model's effective kernels keep the pruned zeros."""
    x, y, _, _ = digits
    pqat = kopt.collaborative(
        trained_residual, x[:128], y[:128], recipe="pqat", target_sparsity=0.6, batch_size=64
    )
    head = kopt.compression_summary(pqat)["head"]
    assert head.quantized
    assert head.sparsity == pytest.approx(0.6, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"recipe": "qat"}, "Argument `recipe` must be one of 'pqat'"),
        ({"recipe": ("quantize", "cluster")}, "in the order prune, cluster, quantize"),
        ({"epochs": 0}, r"Argument `epochs` must be >= 1"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    model = build_sequential_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=match):
        kopt.collaborative(model, np.zeros((4, 8, 8, 1)), np.zeros(4), **kwargs)


def test_uncompiled_model_needs_loss_and_optimizer():
    with pytest.raises(ValueError, match="a compiled model"):
        kopt.collaborative(build_sequential_cnn(), np.zeros((4, 8, 8, 1)), np.zeros(4))


def test_single_stage_recipes_and_callbacks_reach_every_stage(digits, trained_residual):
    from keras_opt.backend import keras

    x, y, _, _ = digits

    class Count(keras.callbacks.Callback):
        fits = 0

        def on_train_begin(self, logs=None):
            Count.fits += 1

    pc = kopt.collaborative(
        trained_residual,
        x[:128],
        y[:128],
        recipe="pc",
        target_sparsity=0.5,
        number_of_clusters=8,
        batch_size=64,
        callbacks=[Count()],
    )
    assert Count.fits == 2  # one deep copy per stage
    head = kopt.compression_summary(pc)["head"]
    assert not head.wrappers  # stripped after the last stage
    assert head.sparsity == pytest.approx(0.5, abs=0.01)
    assert head.unique_values <= 8
