"""Story: PCQAT, prune -> cluster -> QAT in one call, each stage kept by the next.

Re-runs itself with ``TF_USE_LEGACY_KERAS=1`` when needed (TFMOT needs tf_keras).

    python examples/pcqat.py [--sparsity 0.5] [--clusters 16] [--epochs 1]
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


def main(sparsity: float = 0.5, clusters: int = 16, epochs: int = 1) -> dict:
    x, y, x_test, y_test = digits()
    model = build()
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)

    qat = kopt.collaborative(
        model,
        x,
        y,
        recipe="pcqat",
        target_sparsity=sparsity,
        number_of_clusters=clusters,
        epochs=epochs,
        batch_size=32,
    )
    report = kopt.summary(qat)
    print(report)  # every kernel: the sparsity and <= clusters values, and quantized
    qat.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"PCQAT accuracy (fake-quant): {qat.evaluate(x_test, y_test, verbose=0)[1]:.3f}")
    return report.to_dict()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    main(**vars(parser.parse_args()))
