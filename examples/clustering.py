"""Story: weight clustering to 16 shared values per kernel.

Runs in the default Keras 3 flavor on keras_opt's native engine, and under
``TF_USE_LEGACY_KERAS=1`` on TFMOT. No callback is needed in either.

    python examples/clustering.py [--clusters 16] [--init kmeans++] [--per-channel]
"""

from __future__ import annotations

import argparse

import keras_opt.optimization as kopt
from keras_opt.backend import keras
from keras_opt.datasets import digits
from keras_opt.datasets import digits_cnn as build


def main(clusters: int = 16, init: str = "kmeans++", per_channel: bool = False) -> float:
    x, y, x_test, y_test = digits()
    model = build()
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    print(f"float accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    clustered = kopt.cluster(model, clusters, init=init, per_channel=per_channel)
    clustered.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    clustered.fit(x, y, epochs=1, batch_size=32, verbose=0)

    small = kopt.strip(clustered)
    print(kopt.compression_summary(small))  # unique values per kernel <= clusters
    small.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    accuracy = small.evaluate(x_test, y_test, verbose=0)[1]
    print(f"clustered accuracy: {accuracy:.3f}")
    return float(accuracy)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--init", default="kmeans++")
    parser.add_argument("--per-channel", action="store_true", dest="per_channel")
    main(**vars(parser.parse_args()))
