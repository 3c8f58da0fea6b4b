"""Make KerasTuner 1.4.8 accept tf_keras models, without patching KerasTuner.

KerasTuner always uses the ``keras`` package (Keras 3) when it is installed.
Under tf_keras (``TF_USE_LEGACY_KERAS=1``, which TFMOT needs) three things
break (keras-tuner #1039):

1. ``Tuner._try_build`` rejects the model: ``isinstance(model, keras.Model)``
   checks against Keras 3 (``FatalTypeError``).
2. ``Tuner.run_trial`` appends two Keras 3 callbacks of its own
   (``TunerCallback``, ``SaveBestEpoch``) to the user's callbacks, and tf_keras'
   ``fit`` cannot call Keras 3 callbacks.
3. ``validate_trial_results`` accepts only a Keras 3 ``History``.

`TfKerasSupport` is a mixin placed in front of a KerasTuner tuner class. It
overrides exactly the two hooks KerasTuner offers for this (``_try_build`` and
``_build_and_fit_model``, the method KerasTuner keeps for AutoKeras to
override): the model check accepts the flavor in use, KerasTuner's Keras 3
callbacks are bridged to tf_keras, the callbacks a TFMOT-pruned trial model
needs are added, and the tf_keras ``History`` is handed back as a Keras 3 one.
Under Keras 3 it changes nothing: keras_opt's native compression needs no
callback. Nothing is patched at
import time: only tuners created from keras_opt's classes behave differently.
"""

from __future__ import annotations

import gc
from typing import Any

from keras_tuner.src import errors as kt_errors
from keras_tuner.src import utils as kt_utils
from keras_tuner.src.backend import config as kt_config
from keras_tuner.src.backend import keras as kt_keras
from keras_tuner.src.engine import tuner as kt_tuner
from keras_tuner.src.engine import tuner_utils

from keras_opt.backend import is_tf_keras, keras

_HOOKS = (
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_begin",
    "on_train_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_begin",
    "on_predict_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)


class Keras3CallbackBridge(keras.callbacks.Callback):
    """A tf_keras callback that forwards every hook to a Keras 3 callback.

    Used for KerasTuner's own per-trial callbacks when training tf_keras
    models; they only read ``self.model`` (weights, ``save_weights``), which
    a tf_keras model provides.
    """

    def __init__(self, callback: Any) -> None:
        super().__init__()
        self.callback = callback

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params: Any) -> None:
        super().set_params(params)
        self.callback.set_params(params)


def _forward(name: str) -> Any:
    def hook(self: Keras3CallbackBridge, *args: Any, **kwargs: Any) -> None:
        getattr(self.callback, name)(*args, **kwargs)

    hook.__name__ = name
    return hook


for _name in _HOOKS:
    setattr(Keras3CallbackBridge, _name, _forward(_name))


def bridge_callbacks(callbacks: list[Any] | None) -> list[Any]:
    """Return ``callbacks`` with Keras 3 callbacks wrapped for tf_keras' fit."""
    out = []
    for cb in callbacks or []:
        if isinstance(cb, keras.callbacks.Callback):
            out.append(cb)
        elif isinstance(cb, kt_keras.callbacks.Callback):
            out.append(Keras3CallbackBridge(cb))
        else:
            raise TypeError(
                f"Callback {cb!r} is neither a {keras.__name__} nor a Keras 3 callback. "
                "Pass callbacks of the Keras flavor in use (keras_opt.backend.keras)."
            )
    return out


def as_keras3_history(results: Any) -> Any:
    """Turn a tf_keras ``History`` into the Keras 3 one KerasTuner validates."""
    if isinstance(results, keras.callbacks.History) and not isinstance(
        results, kt_keras.callbacks.History
    ):
        history = kt_keras.callbacks.History()
        history.history = dict(results.history)
        history.epoch = list(results.epoch)
        history.params = dict(results.params or {})
        return history
    if isinstance(results, list):
        return [as_keras3_history(r) for r in results]
    return results


def _compression_callbacks(model: Any, given: list[Any] | None) -> list[Any]:
    """What a TFMOT-compressed trial model needs in ``fit`` and the user did not pass.

    A user cannot pass per-model callbacks to ``search``: a model returned by
    ``keras_opt.optimization.prune`` under tf_keras needs TFMOT's pruning step
    callback, so it is added to every trial that needs it (KerasTuner has
    already deep-copied the user's callbacks for this trial).
    """
    from keras_opt.optimization import callbacks as needed_callbacks

    present = {type(cb) for cb in given or []}
    return [cb for cb in needed_callbacks(model) if type(cb) not in present]


class TfKerasSupport:
    """Mixin for a KerasTuner ``Tuner`` class: accept models of the flavor in use.

    See the module docstring for what it changes and why. Combine it with any
    tuner: ``class MyTuner(TfKerasSupport, keras_tuner.RandomSearch): ...``
    (`keras_opt.tuning.RandomSearch` and friends already do).

    Args:
        *args: Passed on to the tuner class.
        **kwargs: Passed on to the tuner class.

    Returns:
        The combined tuner, as the KerasTuner class would be.

    Example:
        >>> import keras_tuner as kt
        >>> from keras_opt.tuning._compat import TfKerasSupport
        >>> class MyTuner(TfKerasSupport, kt.RandomSearch):
        ...     pass
    """

    def _try_build(self, hp: Any) -> Any:
        if not is_tf_keras():
            return super()._try_build(hp)  # type: ignore[misc]
        keras.backend.clear_session()
        gc.collect()
        model = self._build_hypermodel(hp)  # type: ignore[attr-defined]
        if not isinstance(model, keras.Model):
            raise kt_errors.FatalTypeError(
                "Expected the model-building function, or HyperModel.build() to return a "
                f"tf_keras Model (keras_opt is running with TF_USE_LEGACY_KERAS=1). Received: "
                f"{model} of type {type(model)}. Build it with `keras_opt.backend.keras` or "
                "`tf.keras`."
            )
        size = kt_tuner.maybe_compute_model_size(model)
        if self.max_model_size and size > self.max_model_size:  # type: ignore[attr-defined]
            raise kt_errors.FailedTrialError(f"Oversized model: {size} parameters. Skip model.")
        return model

    def _fit_trial(self, trial: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Build and fit one trial's model; returns ``(model, results)``."""
        hp = trial.hyperparameters
        model = self._try_build(hp)
        if is_tf_keras():
            given = kwargs.get("callbacks")
            kwargs["callbacks"] = bridge_callbacks(given) + _compression_callbacks(model, given)
        results = self.hypermodel.fit(hp, model, *args, **kwargs)  # type: ignore[attr-defined]
        if kt_config.multi_backend():
            kt_utils.save_json(
                self._get_build_config_fname(trial.trial_id),  # type: ignore[attr-defined]
                model.get_build_config(),
            )
        return model, as_keras3_history(results)

    def _build_and_fit_model(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        model, results = self._fit_trial(trial, *args, **kwargs)
        results = self._after_fit(trial, model, results)
        tuner_utils.validate_trial_results(
            results,
            self.oracle.objective,  # type: ignore[attr-defined]
            "HyperModel.fit()",
        )
        return results

    def _after_fit(self, trial: Any, model: Any, results: Any) -> Any:
        """Hook for subclasses (the deployment objective); returns the trial results."""
        return results
