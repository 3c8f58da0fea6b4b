"""Shared, expensive fixtures for the TFLite tests: one trained CNN, one full export."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import build_residual_cnn, compile_classifier


@pytest.fixture(scope="session")
def trained_cnn(digits):
    """The Functional Conv+BN+residual CNN trained on digits (about 0.95 test accuracy)."""
    x_train, y_train, _, _ = digits
    model = compile_classifier(build_residual_cnn(seed=0))
    model.fit(x_train, y_train, batch_size=32, epochs=12, verbose=0)
    return model


@pytest.fixture(scope="session")
def exported(trained_cnn, digits, tmp_path_factory):
    """All six variants exported once (one converter process for the sweep)."""
    from keras_opt.tflite import export

    x_train, _, x_test, y_test = digits
    out = tmp_path_factory.mktemp("tflite") / "digits"
    return export(
        trained_cnn,
        out,
        representative_data=x_train[:200],
        eval_data=(x_test, y_test),
        runs=20,
        warmup=3,
        isolation="export",
        quant_debug=True,
    )


@pytest.fixture
def tiny_dense():
    """A small untrained two-layer Dense model (cheap conversions for error tests)."""
    from keras_opt.backend import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="features")
    x = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="tiny")


@pytest.fixture
def tiny_data():
    rng = np.random.RandomState(0)
    return rng.rand(32, 4).astype("float32"), rng.randint(0, 3, 32)
