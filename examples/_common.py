"""Shared by the example scripts: digits data and a small CNN."""

from __future__ import annotations


def digits() -> tuple:
    """sklearn's digits as (x_train, y_train, x_test, y_test): `keras_opt.datasets.digits`."""
    from keras_opt.datasets import digits as load

    return load(seed=0)


def build_cnn():
    """A compiled Conv + BatchNorm CNN for digits."""
    from keras_opt.backend import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 3)(inputs)))
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
