from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_opt.backend import keras


@pytest.fixture(scope="session")
def flat_digits():
    """Digits as 64-vectors: (x_train, y_train, x_val, y_val)."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    idx = np.random.RandomState(0).permutation(len(x))
    x, y = x[idx], y[idx]
    return x[:1200], y[:1200], x[1200:], y[1200:]


def build_dense(hp):
    """A small hypermodel: Dense width tuned."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(
                hp.Choice("units", [8, 64]), activation=hp.Choice("activation", ["relu", "tanh"])
            ),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
