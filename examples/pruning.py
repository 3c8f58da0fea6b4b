"""Story: prune a trained CNN to 80% sparsity, fine-tune, strip, save.

TFMOT needs the tf_keras flavor, so this script re-runs itself with
``TF_USE_LEGACY_KERAS=1`` when started without it (the variable must be set
before TensorFlow is imported).

    python examples/pruning.py [--sparsity 0.8] [--epochs 3]
"""

from __future__ import annotations

import _common

_common.use_tf_keras()  # re-runs this script under tf_keras if needed


import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

import keras_opt.optimization as kopt  # noqa: E402
from keras_opt.backend import keras  # noqa: E402

digits = _common.digits
build = _common.build_cnn


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
