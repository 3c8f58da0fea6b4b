"""Story: prune a trained CNN to 80% sparsity, fine-tune, strip, save.

Runs in the default Keras 3 flavor on keras_opt's native engine (a plain
``fit``, no callback), and under ``TF_USE_LEGACY_KERAS=1`` on TFMOT, whose
step callback ``kopt.callbacks(pruned)`` supplies (it is ``[]`` under Keras 3).

    python examples/pruning.py [--sparsity 0.8] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import keras_opt.optimization as kopt
from keras_opt.backend import keras
from keras_opt.datasets import digits
from keras_opt.datasets import digits_cnn as build


def main(sparsity: float = 0.8, epochs: int = 3) -> float:
    x, y, x_test, y_test = digits()
    model = build()
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    print(f"float accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    pruned = kopt.prune(model, target_sparsity=sparsity)  # schedule fitted to the fit below
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # kopt.callbacks(pruned) is [] under Keras 3; TFMOT's pruning step under tf_keras.
    pruned.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=kopt.callbacks(pruned))

    small = kopt.strip(pruned)
    print(kopt.compression_summary(small))
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
