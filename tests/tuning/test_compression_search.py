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


@pytest.fixture(scope="module")
def pruned_base(flat_digits):
    """A trained Dense net pruned to 50% and stripped once, before the searches."""
    x, y, _, _ = flat_digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="head"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=100, verbose=0)
    pruned = kopt.prune(model, target_sparsity=0.5)
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=1, batch_size=100, verbose=0, callbacks=kopt.callbacks(pruned))
    return kopt.strip(pruned)


def _int8_kernels(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    return [
        interpreter.get_tensor(int(op["inputs"][1]))
        for op in interpreter._get_ops_details()
        # Native QAT (Keras 3) runs Dense as a per-channel 1x1 CONV_2D; TFMOT keeps FULLY_CONNECTED.
        if op["op_name"] in ("FULLY_CONNECTED", "CONV_2D")
    ]


@pytest.mark.parametrize("name", list(TUNERS))
def test_every_tuner_scores_qat_and_pcqat_hypermodels_on_their_int8_file(
    name, flat_digits, pruned_base, tmp_path
):
    import glob
    import os

    from keras_opt.tuning import Deployment

    x, y, xv, yv = flat_digits
    deployment = Deployment(
        eval_data=(xv, yv), representative_data=x[:100], variant="int8", runs=3, isolation="none"
    )

    def build(hp):
        model = keras.models.clone_model(pruned_base)
        model.set_weights(pruned_base.get_weights())
        if hp.Choice("recipe", ["qat", "pcqat"]) == "pcqat":  # cluster (sparsity kept), then QAT
            clustered = kopt.cluster(model, CLUSTERS, preserve_sparsity=True)
            model = kopt.quantize(kopt.strip(clustered), preserve="both")
        else:
            model = kopt.quantize(model)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    cls, kwargs = TUNERS[name]
    tuner = cls(
        build,
        objective=deployment.objective,
        deployment=deployment,
        directory=str(tmp_path),
        project_name=name,
        **kwargs,
    )
    tuner.search(x, y, epochs=2, batch_size=100, validation_data=(xv, yv), verbose=0)
    trials = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(trials) >= 2
    for trial in trials:
        assert trial.metrics.get_last_value("tflite_accuracy") > 0.3  # chance is 0.1
        (path,) = glob.glob(os.path.join(tuner.get_trial_dir(trial.trial_id), "tflite", "*.tflite"))
        kernels = _int8_kernels(path)
        assert len(kernels) == 2
        assert all(k.dtype == np.int8 for k in kernels)
        if trial.hyperparameters.get("recipe") == "pcqat":
            for kernel in kernels:
                assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02)
                assert max(np.unique(row).size for row in kernel) <= CLUSTERS
