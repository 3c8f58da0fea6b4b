"""KerasTuner integration: keras_opt inside ``tuner.search``.

* Tuners (`RandomSearch`, `GridSearch`, `BayesianOptimization`, `Hyperband`,
  or `with_keras_opt` for any tuner class) that accept tf_keras models —
  which TFMOT needs and KerasTuner 1.4.8 rejects (keras-tuner #1039) — with
  no global patching.
* `Deployment`: score each trial on its TFLite artifact (size, latency,
  accuracy), under budgets; `pareto_front` and `rank_trials` read the search;
  `export_best` exports the winner like any other model.
* `learning_rate` and `compression`: search-space helpers for ``build(hp)``.

Example:
    >>> from keras_opt.tuning import RandomSearch, Deployment, pareto_front
"""

from keras_opt.tuning.deployment import Deployment
from keras_opt.tuning.results import export_best, pareto_front, rank_trials, trial_rows
from keras_opt.tuning.search_space import compression, learning_rate
from keras_opt.tuning.tuners import (
    BayesianOptimization,
    GridSearch,
    Hyperband,
    RandomSearch,
    with_keras_opt,
)

__all__ = [
    "RandomSearch",
    "GridSearch",
    "BayesianOptimization",
    "Hyperband",
    "with_keras_opt",
    "Deployment",
    "pareto_front",
    "rank_trials",
    "trial_rows",
    "export_best",
    "learning_rate",
    "compression",
]
