"""Story: weight clustering to 16 shared values per kernel.

Re-runs itself with ``TF_USE_LEGACY_KERAS=1`` when needed (TFMOT needs tf_keras).

    python examples/clustering.py [--clusters 16] [--init kmeans++]
"""

from __future__ import annotations

import _common

_common.use_tf_keras()  # re-runs this script under tf_keras if needed


import argparse  # noqa: E402

import keras_opt.optimization as kopt  # noqa: E402
from keras_opt.backend import keras  # noqa: E402

digits = _common.digits
build = _common.build_cnn


def main(clusters: int = 16, init: str = "kmeans++") -> float:
    x, y, x_test, y_test = digits()
    model = build()
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    print(f"float accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    clustered = kopt.cluster(model, clusters, init=init)
    clustered.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    clustered.fit(x, y, epochs=1, batch_size=32, verbose=0)

    small = kopt.strip(clustered)
    print(kopt.summary(small))  # unique values per kernel <= clusters
    small.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    accuracy = small.evaluate(x_test, y_test, verbose=0)[1]
    print(f"clustered accuracy: {accuracy:.3f}")
    return float(accuracy)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--init", default="kmeans++")
    main(**vars(parser.parse_args()))
