"""keras_opt callbacks and tf_keras models inside KerasTuner searches."""

from __future__ import annotations

import keras_tuner as kt
import numpy as np
import pytest

from keras_opt.backend import keras
from keras_opt.callbacks import LRScheduler
from keras_opt.schedules import OneCycle
from keras_opt.tuning import (
    BayesianOptimization,
    GridSearch,
    Hyperband,
    RandomSearch,
    trial_rows,
    with_keras_opt,
)
from tests.tuning.conftest import build_dense

BATCH = 100  # 1200 samples -> 12 steps per epoch
STEPS = 12

TUNERS = {
    "random": (RandomSearch, {"max_trials": 2}),
    "grid": (GridSearch, {"max_trials": 2}),
    "bayesian": (BayesianOptimization, {"max_trials": 2, "num_initial_points": 1}),
    "hyperband": (Hyperband, {"max_epochs": 3, "factor": 3, "hyperband_iterations": 1}),
}


@pytest.mark.parametrize("name", list(TUNERS))
def test_every_tuner_runs_keras_opt_callbacks(name, flat_digits, tmp_path):
    x, y, xv, yv = flat_digits
    cls, kwargs = TUNERS[name]
    tuner = cls(
        build_dense,
        objective="val_accuracy",
        directory=str(tmp_path),
        project_name=name,
        **kwargs,
    )
    tuner.search(
        x,
        y,
        epochs=2,
        batch_size=BATCH,
        validation_data=(xv, yv),
        callbacks=[LRScheduler(OneCycle(max_lr=1e-2))],
        verbose=0,
    )
    rows = trial_rows(tuner)
    assert len(rows) >= 2
    for trial in tuner.oracle.trials.values():
        # KerasTuner records the metrics of the trial's best epoch; the LR logged there
        # must be the schedule's value at that epoch's last step. The schedule spans fit's
        # epochs (set per trial by Hyperband) and continues from Hyperband's initial_epoch.
        epochs = trial.hyperparameters.values.get("tuner/epochs", 2)
        schedule = OneCycle(max_lr=1e-2, total_steps=epochs * STEPS)
        lr_obs = trial.metrics.get_history("learning_rate")[-1]
        # `step` indexes this fit's History, which starts at Hyperband's initial_epoch.
        epoch = trial.hyperparameters.values.get("tuner/initial_epoch", 0) + lr_obs.step
        last = (epoch + 1) * STEPS - 1
        assert lr_obs.value[0] == pytest.approx(schedule.lr_at(last), rel=1e-4)
        beta_obs = trial.metrics.get_history("beta_1")[-1]
        assert beta_obs.value[0] == pytest.approx(schedule.momentum_at(last), rel=1e-5)
    if name == "hyperband":
        assert any(r["hyperparameters"].get("tuner/initial_epoch", 0) > 0 for r in rows)
    best = tuner.get_best_models(1)[0]
    assert isinstance(best, keras.Model)
    _, accuracy = best.evaluate(xv, yv, verbose=0)
    assert accuracy > 0.3  # chance is 0.1; tiny trials of 1-2 epochs


@pytest.mark.tf_keras_only
def test_plain_keras_tuner_rejects_tf_keras_models_and_ours_accepts(flat_digits, tmp_path):
    x, y, xv, yv = flat_digits
    plain = kt.RandomSearch(
        build_dense,
        objective="val_accuracy",
        max_trials=1,
        directory=str(tmp_path),
        project_name="plain",
    )
    with pytest.raises(Exception, match=r"valid Keras Model instance"):
        plain.search(x, y, epochs=1, validation_data=(xv, yv), verbose=0)
    ours = with_keras_opt(kt.RandomSearch)(
        build_dense,
        objective="val_accuracy",
        max_trials=1,
        directory=str(tmp_path),
        project_name="ours",
    )
    ours.search(x, y, epochs=1, validation_data=(xv, yv), verbose=0)
    assert len(trial_rows(ours)) == 1


@pytest.mark.tf_keras_only
def test_tfmot_pruned_hypermodel_searches_under_tf_keras(flat_digits, tmp_path):
    import tensorflow_model_optimization as tfmot

    x, y, xv, yv = flat_digits

    def build(hp):
        model = build_dense(hp)
        target = hp.Choice("target_sparsity", [0.5, 0.8])
        schedule = tfmot.sparsity.keras.ConstantSparsity(target, begin_step=0, frequency=1)
        pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
        pruned.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return pruned

    tuner = GridSearch(
        build, objective="val_accuracy", max_trials=2, directory=str(tmp_path), project_name="prune"
    )
    tuner.search(
        x,
        y,
        epochs=2,
        batch_size=BATCH,
        validation_data=(xv, yv),
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), LRScheduler(OneCycle(1e-2))],
        verbose=0,
    )
    best_hp = tuner.get_best_hyperparameters(1)[0]
    best = tfmot.sparsity.keras.strip_pruning(tuner.get_best_models(1)[0])
    kernel = best.layers[0].get_weights()[0]
    assert np.mean(kernel == 0) == pytest.approx(best_hp.get("target_sparsity"), abs=0.02)
    assert len(trial_rows(tuner)) == 2
