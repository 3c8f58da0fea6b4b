"""`PrunedModel`: the Functional model `prune` returns under Keras 3.

A pruning schedule given relative to the fine-tuning fit (``end=None``, or
lengths in epochs) can only be turned into steps once that fit's epochs and
steps per epoch are known. `PrunedModel.fit` does that before it trains, and
nothing else: it is an ordinary Functional model otherwise (saved, loaded and
cloned as one), and once resolved the schedule lives in each wrapper's config.
"""

from __future__ import annotations

import inspect
from typing import Any

from keras_opt.backend import keras
from keras_opt.optimization import _plan

__all__ = ["PrunedModel"]


def pruning_wrappers(model: Any) -> list:
    """Every native `PruneLowMagnitude` in ``model`` (nested models included)."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(pruning_wrappers(layer))
        elif getattr(type(layer), "compression_kind", None) == "prune":
            out.append(layer)
    return out


class _ResolveSchedules(keras.callbacks.Callback):
    """Fits unresolved pruning plans to this fit (added by `PrunedModel.fit` only)."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        for layer in pruning_wrappers(self.model):
            if layer.steps is None:
                start = int(keras.ops.convert_to_numpy(layer.step.value))
                layer.steps = _plan.resolve(
                    layer.plan, start, self.params.get("epochs"), self.params.get("steps")
                )


_FIT_PARAMS = list(inspect.signature(keras.Model.fit).parameters)[1:]


@keras.saving.register_keras_serializable(package="keras_opt")
class PrunedModel(keras.Model):
    """A Functional model whose ``fit`` first fits pruning schedules to that fit.

    Args:
        *args: As for ``keras.Model(inputs, outputs, name=...)``.
        **kwargs: As for ``keras.Model``.

    Returns:
        A Keras 3 Functional model.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> pruned = kopt.prune(model, target_sparsity=0.8)  # doctest: +SKIP
        >>> type(pruned).__name__  # doctest: +SKIP
        'PrunedModel'
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        if any(layer.steps is None for layer in pruning_wrappers(self)):
            bound = dict(zip(_FIT_PARAMS, args, strict=False))
            bound.update(kwargs)
            callbacks = bound.get("callbacks")
            if isinstance(callbacks, keras.callbacks.CallbackList):
                callbacks.append(_ResolveSchedules())
            else:
                bound["callbacks"] = [_ResolveSchedules(), *(callbacks or [])]
            return super().fit(**bound)
        return super().fit(*args, **kwargs)
