"""Story: prune a trained CNN to 80% sparsity, fine-tune, strip, save.

TFMOT needs the tf_keras flavor, so this script re-runs itself with
``TF_USE_LEGACY_KERAS=1`` when started without it (the variable must be set
before TensorFlow is imported).

    python examples/pruning.py [--sparsity 0.8] [--epochs 3]
"""

from __future__ import annotations

import os
import sys

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    os.execve(
        sys.executable,
        [sys.executable, *sys.argv],
        {**os.environ, "TF_USE_LEGACY_KERAS": "1"},
    )
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_opt.optimization as kopt  # noqa: E402
from keras_opt.backend import keras  # noqa: E402


def digits():
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    return x[:1400], d.target[:1400], x[1400:], d.target[1400:]


def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 3)(inputs)))
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main(sparsity: float = 0.8, epochs: int = 3) -> float:
    x, y, x_test, y_test = digits()
    model = build()
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    print(f"float accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    pruned = kopt.prune(model, target_sparsity=sparsity)  # schedule fitted to the fit below
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=kopt.callbacks(pruned))

    small = kopt.strip(pruned)
    print(kopt.summary(small))
    small.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    accuracy = small.evaluate(x_test, y_test, verbose=0)[1]
    print(f"pruned accuracy: {accuracy:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        small.save(os.path.join(tmp, "pruned.keras"))
        keras.models.load_model(os.path.join(tmp, "pruned.keras"))
    return float(np.round(accuracy, 3))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--epochs", type=int, default=3)
    main(**vars(parser.parse_args()))
