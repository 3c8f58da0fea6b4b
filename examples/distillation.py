"""Story: distil a CNN teacher into a small dense student with plain compile/fit.

Runs in both Keras flavors (no TFMOT involved).

    python examples/distillation.py [--temperature 4] [--alpha 0.1] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import keras  # noqa: E402
from keras_opt.optimization import Distiller  # noqa: E402


def main(temperature: float = 4.0, alpha: float = 0.1, epochs: int = 5) -> float:
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    x, y, x_test, y_test = x[:1400], d.target[:1400], x[1400:], d.target[1400:]

    keras.utils.set_random_seed(0)
    teacher = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    teacher.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    teacher.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    print(f"teacher accuracy: {teacher.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    student = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    distiller = Distiller(teacher, student, temperature=temperature, alpha=alpha)
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    distiller.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    student.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    accuracy = student.evaluate(x_test, y_test, verbose=0)[1]
    print(f"distilled student accuracy: {accuracy:.3f}")
    return float(accuracy)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5)
    main(**vars(parser.parse_args()))
