"""check_gradients: a wrong custom gradient fails, correct Dense/Conv/BatchNorm pass."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_opt.backend import keras
from keras_opt.diagnostics import check_gradients
from tests.conftest import build_residual_cnn


class WrongSquareScale(keras.layers.Layer):
    """y = x * w**2 with a custom gradient that forgets the factor 2 for w."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, inputs):
        @tf.custom_gradient
        def f(x, w):
            def grad(dy):
                return dy * w * w, tf.reduce_sum(dy * x * w, axis=0)  # should be 2 * x * w

            return x * w * w, grad

        return f(inputs, tf.convert_to_tensor(self.w))


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


def test_wrong_custom_gradient_fails(rng):
    report = check_gradients(WrongSquareScale(), rng.standard_normal((4, 5)).astype("float32"))
    assert not report.passed
    assert len(report.failures) == 1
    assert report.failures[0].endswith("/w")
    # Autodiff gives half the true derivative: the relative error is exactly 1/2.
    assert report.variables[0].max_rel_error == pytest.approx(0.5, rel=1e-6)
    assert "FAILED" in str(report)


@pytest.mark.parametrize(
    ("layer", "shape", "training"),
    [
        (lambda: keras.layers.Dense(3, activation="tanh"), (4, 5), False),
        (lambda: keras.layers.Conv2D(4, 3, activation="sigmoid"), (2, 6, 6, 3), False),
        (lambda: keras.layers.BatchNormalization(), (6, 4, 4, 3), True),
    ],
)
def test_correct_layers_pass_in_float64(layer, shape, training, rng):
    x = rng.standard_normal(shape).astype("float32")
    report = check_gradients(layer(), x, training=training, wrt_inputs=True)
    assert report.passed, str(report)
    assert all(c.mode == "exact" for c in report.variables)
    # Float64 central differences with eps=1e-6: in float32 the round-off alone
    # (~1e-7 / 1e-6) would give errors near 0.1.
    assert report.max_abs_error < 1e-6
    assert report.variables[-1].name == "input:0"


def test_original_layer_is_untouched(rng):
    layer = keras.layers.Dense(3)
    x = rng.standard_normal((4, 5)).astype("float32")
    layer(x)
    before = [w.copy() for w in layer.get_weights()]
    check_gradients(layer, x)
    for a, b in zip(before, layer.get_weights(), strict=False):
        np.testing.assert_array_equal(a, b)
    assert layer.dtype == "float32"


def test_fast_mode_on_a_residual_model_with_loss(rng, digits):
    x, y, _, _ = digits
    model = build_residual_cnn()
    report = check_gradients(
        model,
        x[:8],
        targets=y[:8],
        loss="sparse_categorical_crossentropy",
        training=True,
        max_elements=200,
        num_projections=4,
    )
    assert report.passed, str(report)
    modes = {c.name.split("/")[0]: c.mode for c in report.variables if c.name.endswith("kernel")}
    assert modes == {"stem": "exact", "res_conv": "projection", "head": "projection"}
    assert [c.checked for c in report.variables if c.mode == "projection"] == [4, 4]


def test_fast_mode_catches_the_wrong_gradient(rng):
    report = check_gradients(
        WrongSquareScale(), rng.standard_normal((4, 5)), fast_mode=True, num_projections=3
    )
    assert not report.passed
    assert report.variables[0].mode == "projection"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model_or_layer": "dense"}, TypeError, "Argument `model_or_layer` must be a Keras"),
        ({"inputs": None}, TypeError, "Argument `inputs` must be"),
        ({"epsilon": 0}, ValueError, "Argument `epsilon` must be > 0"),
        ({"atol": -1}, ValueError, "Argument `atol` must be >= 0"),
        ({"fast_mode": "yes"}, ValueError, "Argument `fast_mode` must be one of"),
        ({"num_projections": 0}, ValueError, "Argument `num_projections` must be >= 1"),
        ({"loss": "mse"}, ValueError, "given together with `targets`"),
        ({"model_or_layer": keras.layers.Flatten()}, ValueError, "trainable variables"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs = {"model_or_layer": keras.layers.Dense(2), "inputs": np.ones((2, 3)), **kwargs}
    with pytest.raises(error, match=match):
        check_gradients(**kwargs)


def test_gradient_checks_example(tmp_path):
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "examples", "gradient_checks.py")
    spec = importlib.util.spec_from_file_location("example_gradient_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(out=str(tmp_path), epochs=2)
    assert results["ScaledSquare (wrong gradient)"] is False
    assert results["Dense"]
    assert results["Conv2D"]
    assert results["BatchNormalization"]
    assert results["accuracy"] > 0.3
    assert (tmp_path / "confusion.png").exists()
