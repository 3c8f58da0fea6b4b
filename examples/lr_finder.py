"""Story: find a learning rate with an LR range test, then train with it.

python examples/lr_finder.py [--plot lr_finder.png]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import keras  # noqa: E402
from keras_opt.callbacks import LRScheduler, find_lr  # noqa: E402
from keras_opt.schedules import OneCycle  # noqa: E402


def main(plot: str | None = None, epochs: int = 5) -> float:
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same"),
            keras.layers.BatchNormalization(momentum=0.9),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    result = find_lr(model, x[:1400], y[:1400], num_steps=100, plot=plot)
    print("suggestions:", {k: f"{v:.2e}" for k, v in result.suggestions.items()})
    print(f"using {result.rule}: {result.suggested_lr:.2e}")
    # The weights and optimizer are exactly as before the sweep: train from here.
    model.fit(
        x[:1400],
        y[:1400],
        epochs=epochs,
        batch_size=32,
        verbose=0,
        callbacks=[LRScheduler(OneCycle(max_lr=3 * result.suggested_lr))],
    )
    _, accuracy = model.evaluate(x[1400:], y[1400:], verbose=0)
    print(f"test accuracy {accuracy:.3f}")
    return float(np.asarray(accuracy))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default=None, help="save the LR curve as PNG here")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    main(args.plot, args.epochs)
