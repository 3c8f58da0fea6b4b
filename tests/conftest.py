"""Shared fixtures: real data (sklearn digits) and small real models.

The suite runs twice, once per Keras flavor (see scripts/test.sh). Tests that
need one flavor use the ``tf_keras_only`` / ``keras3_only`` markers and are
skipped in the other run; the error the other flavor raises is tested
separately. A test that starts both flavors itself is marked ``one_session``
and runs only in the tf_keras run.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from keras_opt import backend
from keras_opt.backend import keras

_SESSION_FLAVOR_ENV = "1" if backend.is_tf_keras() else "0"


@pytest.fixture(autouse=True)
def _pin_flavor_for_subprocesses():
    """Subprocesses inherit os.environ: keep TF_USE_LEGACY_KERAS at this session's flavor.

    A full run once had two subprocess tests of the Keras 3 session start under tf_keras
    (both pass alone), so the variable is pinned before and after every test.
    """
    os.environ[backend.LEGACY_ENV_VAR] = _SESSION_FLAVOR_ENV
    yield
    os.environ[backend.LEGACY_ENV_VAR] = _SESSION_FLAVOR_ENV


def pytest_collection_modifyitems(config, items):
    other = "keras3_only" if backend.is_tf_keras() else "tf_keras_only"
    skip = pytest.mark.skip(reason=f"needs the other Keras flavor (running {backend.flavor()})")
    once = pytest.mark.skip(reason="starts both flavors itself: runs in the tf_keras session")
    for item in items:
        if other in item.keywords:
            item.add_marker(skip)
        elif "one_session" in item.keywords and not backend.is_tf_keras():
            item.add_marker(once)


@pytest.fixture(scope="session")
def digits():
    """sklearn's 8x8 digits as (x_train, y_train, x_test, y_test): `keras_opt.datasets.digits`."""
    from keras_opt.datasets import digits as load

    return load(seed=0)


def build_sequential_cnn(seed: int = 0):
    """Sequential CNN: Conv + BatchNorm + ReLU, pooling, Dense head."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="seq_cnn",
    )


def build_residual_cnn(seed: int = 0):
    """Functional CNN with Conv + BatchNorm and a residual add."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    r = keras.layers.Conv2D(16, 3, padding="same", name="res_conv")(x)
    r = keras.layers.BatchNormalization(name="res_bn")(r)
    x = keras.layers.Add(name="res_add")([x, r])
    x = keras.layers.ReLU(name="res_relu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="res_cnn")


def compile_classifier(model, optimizer=None):
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


@pytest.fixture
def sequential_cnn():
    """A fresh compiled Sequential CNN (Adam 1e-3)."""
    return compile_classifier(build_sequential_cnn())


@pytest.fixture
def residual_cnn():
    """A fresh compiled Functional CNN with BatchNorm and a residual add (Adam 1e-3)."""
    return compile_classifier(build_residual_cnn())
