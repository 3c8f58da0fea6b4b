"""`prune` and `cluster` hypermodels inside every keras_opt tuner, in both flavors.

A user cannot pass per-model callbacks to ``search``: under Keras 3 the native
engine needs none, and under tf_keras keras_opt's tuners add TFMOT's pruning
callback to every trial that needs it. Each trial's saved model is reloaded,
stripped, and its kernels checked.
"""

from __future__ import annotations

import numpy as np
import pytest

import keras_opt.optimization as kopt
from keras_opt.backend import keras
from tests.tuning.test_search import TUNERS

SPARSITY = 0.75
CLUSTERS = 6


def build_compressed(hp):
    """A Dense net on digits, pruned or clustered as the trial says."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="head"),
        ]
    )
    if hp.Choice("technique", ["prune", "cluster"]) == "prune":
        model = kopt.prune(model, target_sparsity=SPARSITY)
    else:
        model = kopt.cluster(model, number_of_clusters=CLUSTERS)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


@pytest.mark.parametrize("name", list(TUNERS))
def test_every_tuner_searches_over_prune_and_cluster(name, flat_digits, tmp_path):
    x, y, xv, yv = flat_digits
    cls, kwargs = TUNERS[name]
    tuner = cls(
        build_compressed,
        objective="val_accuracy",
        directory=str(tmp_path),
        project_name=name,
        **kwargs,
    )
    tuner.search(x, y, epochs=2, batch_size=100, validation_data=(xv, yv), verbose=0)
    trials = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(trials) >= 2
    seen = set()
    for trial in trials:
        technique = trial.hyperparameters.get("technique")
        seen.add(technique)
        stripped = kopt.strip(tuner.load_model(trial))
        for layer in ("hidden", "head"):
            kernel = stripped.get_layer(layer).get_weights()[0]
            if technique == "prune":
                assert np.mean(kernel == 0) == pytest.approx(SPARSITY, abs=0.01), layer
            else:
                assert np.unique(kernel).size <= CLUSTERS, layer
        assert trial.metrics.get_best_value("val_accuracy") > 0.25  # chance is 0.1
    if name == "grid":
        assert seen == {"prune", "cluster"}
