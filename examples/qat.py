"""Story: quantization-aware training, then an int8 TFLite file.

Checks the model first (`kopt.check`), fine-tunes the QAT model for one
epoch, converts it with ``tf.lite.Optimize.DEFAULT`` and measures the int8
file's accuracy with the LiteRT interpreter. Runs in the default Keras 3
flavor on keras_opt's native engine (BatchNorm folded, ReLU fused, every
kernel int8) and under ``TF_USE_LEGACY_KERAS=1`` on TFMOT.

    python examples/qat.py [--epochs 1]
"""

from __future__ import annotations

import argparse

import numpy as np

import keras_opt.optimization as kopt
from keras_opt.datasets import digits
from keras_opt.datasets import digits_cnn as build


def main(epochs: int = 1) -> float:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    x, y, x_test, y_test = digits()
    model = build()
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    print(f"float accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")
    print(kopt.check_quantizable(model))

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
