"""Story: quantization-aware training, then an int8 TFLite file.

Checks the model first (`kopt.check`), fine-tunes the QAT model for one
epoch, converts it with ``tf.lite.Optimize.DEFAULT`` and measures the int8
file's accuracy with the LiteRT interpreter. Re-runs itself with
``TF_USE_LEGACY_KERAS=1`` when needed (TFMOT needs tf_keras).

    python examples/qat.py [--epochs 1]
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


def main(epochs: int = 1) -> float:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    x, y, x_test, y_test = digits()
    model = build()
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    print(f"float accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")
    print(kopt.check(model))

    qat = kopt.quantize(model, skip_unsupported=True)
    qat.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    qat.fit(x, y, epochs=epochs, batch_size=32, verbose=0)

    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    hits = 0
    for image, label in zip(x_test, y_test, strict=True):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out["index"])) == label)
    accuracy = hits / len(y_test)
    print(f"int8 TFLite accuracy: {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    main(**vars(parser.parse_args()))
