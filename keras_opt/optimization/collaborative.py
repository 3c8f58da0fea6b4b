"""Collaborative optimization: prune -> cluster -> QAT, each stage kept by the next.

One call runs PQAT, CQAT or PCQAT with the user's data: every stage wraps the
previous (stripped) result, fine-tunes it with the user's compile settings,
and the next stage preserves what it did (sparsity-preserving clustering,
prune/cluster-preserving quantization schemes from TFMOT).
"""

from __future__ import annotations

import logging
from typing import Any

from keras_opt import _validation, backend
from keras_opt.optimization import _engine
from keras_opt.optimization.clustering import cluster
from keras_opt.optimization.pruning import prune
from keras_opt.optimization.pruning_callbacks import callbacks as pruning_callbacks
from keras_opt.optimization.quantization import quantize
from keras_opt.optimization.strip import strip

__all__ = ["collaborative", "RECIPES"]

logger = logging.getLogger(__name__)

RECIPES = {
    "pqat": ("prune", "quantize"),
    "cqat": ("cluster", "quantize"),
    "pcqat": ("prune", "cluster", "quantize"),
}


def _compile_like(model: Any, source: Any, optimizer: Any, loss: Any, metrics: Any) -> None:
    template = source.optimizer if optimizer is None else optimizer
    if not isinstance(template, str):
        # A fresh optimizer per stage: an optimizer is bound to the variables it first saw.
        template = type(template).from_config(template.get_config())
    model.compile(optimizer=template, loss=loss, metrics=metrics)


def collaborative(
    model: Any,
    x: Any,
    y: Any = None,
    *,
    recipe: str = "pcqat",
    target_sparsity: float = 0.5,
    number_of_clusters: int = 16,
    epochs: int = 1,
    batch_size: int | None = None,
    validation_data: Any = None,
    optimizer: Any = None,
    loss: Any = None,
    metrics: list | None = None,
    skip_unsupported: bool = False,
    verbose: int = 0,
) -> Any:
    """Run PQAT, CQAT or PCQAT on a trained, compiled model, fine-tuning between stages.

    Args:
        model: A trained, compiled tf_keras model. It is not modified.
        x: Training inputs, as for ``fit`` (arrays or a dataset).
        y: Training targets, as for ``fit``.
        recipe: String. ``"pqat"`` (prune, QAT), ``"cqat"`` (cluster, QAT) or
            ``"pcqat"`` (prune, cluster, QAT).
        target_sparsity: Float in [0, 1). Sparsity of the pruning stage.
        number_of_clusters: Integer >= 2. Values per kernel of the clustering stage.
        epochs: Integer >= 1. Fine-tuning epochs per stage.
        batch_size: Integer or None, as for ``fit``.
        validation_data: As for ``fit``.
        optimizer: Optimizer (or its name) for every stage, copied fresh for each;
            None copies ``model``'s.
        loss: Loss; None reuses ``model.loss``.
        metrics: Metrics list; None compiles without metrics.
        skip_unsupported: Boolean. Passed to `quantize`.
        verbose: Integer. ``fit`` verbosity.

    Returns:
        The quantization-aware model of the last stage; convert it to int8
        TFLite directly (the zeros and shared values survive the conversion).

    Raises:
        FlavorError: under Keras 3.
        ValueError: for an unknown recipe, an uncompiled model with no
            ``loss``/``optimizer`` given, or bad stage arguments.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> qat = kopt.collaborative(model, x, y, recipe="pcqat", epochs=2)  # doctest: +SKIP
    """
    _engine.get_engine("collaborative")
    backend.check_model(model)
    _validation.one_of("recipe", recipe, tuple(RECIPES))
    _validation.integer("epochs", epochs, minimum=1)
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None or (optimizer is None and getattr(model, "optimizer", None) is None):
        _validation.fail(
            "model",
            "a compiled model, or pass `optimizer=` and `loss=`",
            model.name,
            hint="Call model.compile(...) first",
        )
    stages = RECIPES[recipe]
    fit_args = {"epochs": epochs, "batch_size": batch_size, "verbose": verbose}
    if validation_data is not None:
        fit_args["validation_data"] = validation_data
    current = model
    for stage in stages:
        if stage == "prune":
            wrapped = prune(current, target_sparsity=target_sparsity)
        elif stage == "cluster":
            wrapped = cluster(current, number_of_clusters, preserve_sparsity="prune" in stages)
        else:
            preserve = {
                ("prune",): "sparsity",
                ("cluster",): "clusters",
                ("prune", "cluster"): "both",
            }[stages[:-1]]
            wrapped = quantize(current, preserve=preserve, skip_unsupported=skip_unsupported)
        _compile_like(wrapped, model, optimizer, loss, metrics)
        wrapped.fit(x, y, callbacks=pruning_callbacks(wrapped), **fit_args)
        logger.info("Collaborative stage %r done.", stage)
        current = wrapped if stage == "quantize" else strip(wrapped)
    return current
