"""Story: export a trained Keras model to measured TFLite variants.

Trains the Conv + BatchNorm + residual CNN on sklearn's digits for a few
epochs, then exports float32, float16 and int8 variants with size, LiteRT
latency and accuracy measured from each file.

    python examples/export_tflite.py [--out tflite_models/digits] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import keras  # noqa: E402
from keras_opt.tflite import export  # noqa: E402


def build(seed: int = 0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
    r = keras.layers.BatchNormalization(momentum=0.9)(keras.layers.Conv2D(16, 3, padding="same")(x))
    x = keras.layers.ReLU()(keras.layers.Add()([x, r]))
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def main(
    out: str = "tflite_models/digits", epochs: int = 5, runs: int = 50, isolation: str = "export"
):
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target
    idx = np.random.RandomState(0).permutation(len(x))
    x, y = x[idx], y[idx]
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    result = export(
        model,
        out,
        representative_data=x_train[:200],
        eval_data=(x_test, y_test),
        variants=["float32", "float16", "int8"],
        runs=runs,
        isolation=isolation,
    )
    print(result.format_table())
    print(f"manifest: {result.manifest_path}\nreport:   {result.report_path}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tflite_models/digits")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    main(args.out, args.epochs, args.runs)
