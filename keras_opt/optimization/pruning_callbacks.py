"""The callbacks a model from `keras_opt.optimization.prune` needs while it trains."""

from __future__ import annotations

from typing import Any

from keras_opt.optimization import _engine, pruning

__all__ = ["callbacks"]

_CLASSES: dict[str, type] = {}


def _classes() -> dict[str, type]:
    """Define the TFMOT-based callback classes on first use (tf_keras only)."""
    if _CLASSES:
        return _CLASSES
    import tensorflow as tf

    engine = _engine.get_engine("callbacks")
    base = engine.update_pruning_step_class()
    summaries = engine.tfmot.sparsity.keras.PruningSummaries
    keras_tb = engine.tfmot.sparsity.keras.PruningSummaries.__mro__[1]

    class PruningStep(base):  # type: ignore[misc, valid-type]
        """TFMOT's UpdatePruningStep that first fits the schedule to this fit."""

        def on_train_begin(self, logs: dict | None = None) -> None:
            super().on_train_begin(logs)
            plan = pruning.plan_of(self.model)
            if plan is not None and not plan.resolved:
                pruning.resolve_schedules(
                    self.model,
                    self.prunable_layers,
                    self.params.get("epochs"),
                    self.params.get("steps"),
                )
                # The schedule's steps are Python numbers baked into the graph.
                self.model.train_function = self.model.make_train_function(force=True)

    class LazyPruningSummaries(summaries):  # type: ignore[misc, valid-type]
        """TFMOT's PruningSummaries, opening its writer in on_train_begin."""

        def __init__(self, log_dir: str, update_freq: str | int = "epoch") -> None:
            keras_tb.__init__(self, log_dir=log_dir, update_freq=update_freq)
            self._file_writer = None

        def on_train_begin(self, logs: dict | None = None) -> None:
            super().on_train_begin(logs)
            if self._file_writer is None:
                self._file_writer = tf.summary.create_file_writer(self.log_dir + "/metrics")

    _CLASSES["PruningStep"] = PruningStep
    _CLASSES["PruningSummaries"] = LazyPruningSummaries
    return _CLASSES


def __getattr__(name: str) -> Any:
    if name in ("PruningStep", "PruningSummaries"):
        return _classes()[name]
    raise AttributeError(name)


def callbacks(model: Any, log_dir: str | None = None) -> list:
    """Return the callbacks ``model``'s compression wrappers need in ``fit``.

    For a pruned model: TFMOT's UpdatePruningStep (extended to fit the pruning
    schedule to the fit's epochs and steps) and, with ``log_dir``, TFMOT's
    PruningSummaries for TensorBoard. Clustered and quantized models need none,
    so the list is empty for them.

    Args:
        model: The model returned by `prune` (or `cluster`, `quantize`).
        log_dir: String or None. Where PruningSummaries writes sparsity curves.

    Returns:
        List of callbacks to add to ``fit(callbacks=...)``.

    Raises:
        FlavorError: under Keras 3.
        ValueError: for an empty ``log_dir``.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> pruned.fit(x, y, callbacks=kopt.callbacks(pruned))  # doctest: +SKIP
    """
    _engine.get_engine("callbacks")
    from keras_opt import _validation, backend

    backend.check_model(model)
    if log_dir is not None and (not isinstance(log_dir, str) or not log_dir):
        _validation.fail("log_dir", "a non-empty string or None", log_dir)
    has_pruning = any(_engine.wrapper_kind(layer) == "prune" for layer in _graph_layers(model))
    if not has_pruning:
        return []
    classes = _classes()
    out = [classes["PruningStep"]()]
    if log_dir is not None:
        out.append(classes["PruningSummaries"](log_dir))
    return out


def _graph_layers(model: Any) -> list:
    from keras_opt.optimization._graph import iter_layers

    return list(iter_layers(model))
