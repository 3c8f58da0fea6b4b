"""KerasTuner tuners that take tf_keras models and score trials on TFLite artifacts."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from keras_opt.tuning._compat import TfKerasSupport
from keras_opt.tuning.deployment import Deployment, final_epoch_metrics, trial_artifact_dir

__all__ = ["RandomSearch", "GridSearch", "BayesianOptimization", "Hyperband", "with_keras_opt"]


class DeploymentAware(TfKerasSupport):
    """Mixin: `TfKerasSupport` plus an optional deployment-aware objective.

    Args:
        deployment: `keras_opt.tuning.Deployment` or None. When given, each
            trial's model is exported to its TFLite variant after ``fit`` and
            the measured ``tflite_*`` metrics and ``deploy_score`` are
            recorded; use ``objective=deployment.objective``.
        strip: Callable or None. Applied to the trained model before export
            (default: `keras_opt.optimization.strip` when the model carries
            pruning or clustering wrappers of either engine).
    """

    def __init__(
        self, *args: Any, deployment: Deployment | None = None, strip: Any = None, **kwargs: Any
    ) -> None:
        if deployment is not None and not isinstance(deployment, Deployment):
            raise TypeError(
                "Argument `deployment` must be a keras_opt.tuning.Deployment or None. "
                f"Received: deployment={type(deployment).__name__}"
            )
        if strip is not None and not callable(strip):
            raise TypeError(f"Argument `strip` must be callable or None. Received: strip={strip!r}")
        self.deployment = deployment
        self.strip = strip
        super().__init__(*args, **kwargs)

    def _export_model(self, model: Any) -> Any:
        if self.strip is not None:
            return self.strip(model)
        from keras_opt.optimization import compression_of, strip

        # Pruning and clustering wrappers are stripped for export; a QAT model is
        # converted as it is (its int8 file keeps the trained ranges).
        return strip(model) if compression_of(model) & {"prune", "cluster"} else model

    def _after_fit(self, trial: Any, model: Any, results: Any) -> Any:
        if self.deployment is None:
            return results
        metrics = final_epoch_metrics(results)
        out_dir = trial_artifact_dir(self, trial.trial_id)
        metrics.update(self.deployment.measure(self._export_model(model), out_dir))
        return metrics


_TUNER_DOC = """

    Args:
        *args: As for the KerasTuner class (``hypermodel``, ``objective``, ...).
        deployment: `keras_opt.tuning.Deployment` or None: score each trial
            on its TFLite artifact (use ``objective=deployment.objective``).
        strip: Callable or None, applied to a trial's model before export.
        **kwargs: As for the KerasTuner class (``max_trials``, ``directory``, ...).

    Returns:
        A KerasTuner tuner; ``search``, ``get_best_models`` etc. work as usual.
"""


class RandomSearch(DeploymentAware, kt.RandomSearch):
    """``keras_tuner.RandomSearch`` that accepts tf_keras models and a ``deployment=``.

    Example:
        >>> from keras_opt.tuning import RandomSearch  # doctest: +SKIP
        >>> tuner = RandomSearch(build, objective="val_accuracy", max_trials=3,
        ...                      directory="runs", project_name="digits")  # doctest: +SKIP
    """


class GridSearch(DeploymentAware, kt.GridSearch):
    """``keras_tuner.GridSearch`` that accepts tf_keras models and a ``deployment=``.

    Example:
        >>> from keras_opt.tuning import GridSearch  # doctest: +SKIP
        >>> tuner = GridSearch(build, objective="val_accuracy", directory="runs")  # doctest: +SKIP
    """


class BayesianOptimization(DeploymentAware, kt.BayesianOptimization):
    """``keras_tuner.BayesianOptimization`` that accepts tf_keras models and a ``deployment=``.

    Example:
        >>> from keras_opt.tuning import BayesianOptimization  # doctest: +SKIP
        >>> tuner = BayesianOptimization(build, objective="val_accuracy",
        ...                              max_trials=10)  # doctest: +SKIP
    """


class Hyperband(DeploymentAware, kt.Hyperband):
    """``keras_tuner.Hyperband`` that accepts tf_keras models and a ``deployment=``.

    Hyperband resumes trials with ``initial_epoch`` and reloaded weights;
    `keras_opt.callbacks.LRScheduler` then continues its schedule from that epoch.

    Example:
        >>> from keras_opt.tuning import Hyperband  # doctest: +SKIP
        >>> tuner = Hyperband(build, objective="val_accuracy", max_epochs=9)  # doctest: +SKIP
    """


def with_keras_opt(tuner_class: type) -> type:
    """Return a subclass of any KerasTuner tuner class with keras_opt's support.

    Args:
        tuner_class: A subclass of ``keras_tuner.Tuner`` (yours included).

    Returns:
        A new class accepting tf_keras models and ``deployment=``.

    Example:
        >>> import keras_tuner as kt
        >>> from keras_opt.tuning import with_keras_opt
        >>> Tuner = with_keras_opt(kt.RandomSearch)
        >>> Tuner.__name__
        'RandomSearch'
    """
    if not (isinstance(tuner_class, type) and issubclass(tuner_class, kt.Tuner)):
        raise TypeError(
            "Argument `tuner_class` must be a keras_tuner.Tuner subclass. "
            f"Received: tuner_class={tuner_class!r}"
        )
    return type(tuner_class.__name__, (DeploymentAware, tuner_class), {})


for _cls in (RandomSearch, GridSearch, BayesianOptimization, Hyperband):
    _cls.__doc__ = (_cls.__doc__ or "").rstrip() + _TUNER_DOC
