"""Story: PCQAT, prune -> cluster -> QAT in one call, each stage kept by the next.

Runs in the default Keras 3 flavor on keras_opt's native engine and under
``TF_USE_LEGACY_KERAS=1`` on TFMOT.

    python examples/pcqat.py [--sparsity 0.5] [--clusters 16] [--epochs 1]
"""

from __future__ import annotations

import argparse

import keras_opt.optimization as kopt
from keras_opt.datasets import digits
from keras_opt.datasets import digits_cnn as build


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
    report = kopt.compression_summary(qat)
    print(report)  # every kernel quantized, with the sparsity; <= clusters values per channel
    qat.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"PCQAT accuracy (fake-quant): {qat.evaluate(x_test, y_test, verbose=0)[1]:.3f}")
    return report.to_dict()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    main(**vars(parser.parse_args()))
