"""Story: check a custom layer's gradients, then see where a trained classifier errs.

1. ``check_gradients`` compares autodiff with float64 finite differences: a
   layer with a deliberately wrong ``tf.custom_gradient`` fails, Keras'
   Dense/Conv2D/BatchNormalization pass.
2. ``analyze_errors`` on a CNN trained on sklearn's digits: confusion matrix
   (PNG), per-class precision/recall/F1, most-confused pairs, hardest examples.

    python examples/gradient_checks.py [--out runs/diagnostics]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import keras  # noqa: E402
from keras_opt.diagnostics import analyze_errors, check_gradients  # noqa: E402
from tests.conftest import build_sequential_cnn, compile_classifier  # noqa: E402


class ScaledSquare(keras.layers.Layer):
    """y = x * w**2, with a hand-written gradient that forgets the factor 2 for w."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, inputs):
        @tf.custom_gradient
        def f(x, w):
            def grad(dy):
                return dy * w * w, tf.reduce_sum(dy * x * w, axis=0)  # bug: 2 * x * w

            return x * w * w, grad

        return f(inputs, tf.convert_to_tensor(self.w))


def main(out: str = "runs/diagnostics", epochs: int = 3) -> dict:
    rng = np.random.default_rng(0)
    results = {}
    x_vec = rng.standard_normal((4, 5)).astype("float32")
    x_img = rng.standard_normal((4, 6, 6, 3)).astype("float32")
    for name, layer, x, training in [
        ("ScaledSquare (wrong gradient)", ScaledSquare(), x_vec, False),
        ("Dense", keras.layers.Dense(3, activation="tanh"), x_vec, False),
        ("Conv2D", keras.layers.Conv2D(4, 3), x_img, False),
        ("BatchNormalization", keras.layers.BatchNormalization(), x_img, True),
    ]:
        report = check_gradients(layer, x, training=training)
        results[name] = report.passed
        print(f"== {name}\n{report}\n")

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target
    model = compile_classifier(build_sequential_cnn())
    model.fit(x[:1400], y[:1400], batch_size=64, epochs=epochs, verbose=0)
    analysis = analyze_errors(
        model, x[1400:], y[1400:], top_k=5, plot=os.path.join(out, "confusion.png")
    )
    print(f"accuracy {analysis.accuracy:.3f}")
    print("F1 per class:", np.round(analysis.f1, 2))
    print("most confused (true, predicted, count):", analysis.most_confused)
    print("highest-loss test examples:", analysis.top_losses.tolist())
    results["accuracy"] = analysis.accuracy
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/diagnostics")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    main(args.out, args.epochs)
