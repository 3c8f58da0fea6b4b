"""Collaborative optimization: prune -> cluster -> QAT, each stage kept by the next.

One call runs PQAT, CQAT or PCQAT (or any single stage) with the user's data:
every stage wraps the previous (stripped) result, fine-tunes it with the
user's compile settings, and the next stage preserves what it did
(sparsity-preserving clustering, prune/cluster-preserving QAT). Keras 3 runs
on keras_opt's native engine, tf_keras on TFMOT's collaborative schemes.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from keras_opt import _validation, backend
from keras_opt.optimization import _engine
from keras_opt.optimization._strip import strip
from keras_opt.optimization.clustering import cluster
from keras_opt.optimization.pruning import prune
from keras_opt.optimization.pruning_callbacks import callbacks as pruning_callbacks
from keras_opt.optimization.quantization import quantize

__all__ = ["collaborative", "RECIPES", "stages_of"]

logger = logging.getLogger(__name__)

RECIPES = {
    "pqat": ("prune", "quantize"),
    "cqat": ("cluster", "quantize"),
    "pcqat": ("prune", "cluster", "quantize"),
    "pc": ("prune", "cluster"),
    "prune": ("prune",),
    "cluster": ("cluster",),
    "quantize": ("quantize",),
}
"""Named recipes; a tuple of stage names in the order prune, cluster, quantize works too."""

_ORDER = ("prune", "cluster", "quantize")


def stages_of(recipe: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The stages of ``recipe``, checked: each at most once, in the order prune, cluster, QAT.

    Example:
        >>> stages_of("pcqat")
        ('prune', 'cluster', 'quantize')
    """
    if isinstance(recipe, str):
        _validation.one_of("recipe", recipe, tuple(RECIPES))
        return RECIPES[recipe]
    if not isinstance(recipe, (tuple, list)) or not recipe:
        _validation.fail(
            "recipe", f"a recipe name ({', '.join(RECIPES)}) or a tuple of stages", recipe
        )
    stages = tuple(recipe)
    for stage in stages:
        _validation.one_of("recipe", stage, _ORDER)
    if len(set(stages)) != len(stages) or list(stages) != sorted(stages, key=_ORDER.index):
        _validation.fail(
            "recipe",
            "stages in the order prune, cluster, quantize, each at most once (a later stage "
            "can keep an earlier one's zeros and shared values, not the other way round: "
            "pruning after clustering adds values, clustering after QAT loses the int8 grid)",
            recipe,
        )
    return stages


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
    recipe: str | tuple[str, ...] = "pcqat",
    target_sparsity: float = 0.5,
    number_of_clusters: int = 16,
    epochs: int = 1,
    batch_size: int | None = None,
    validation_data: Any = None,
    optimizer: Any = None,
    loss: Any = None,
    metrics: list | None = None,
    skip_unsupported: bool = False,
    callbacks: list | None = None,
    verbose: int = 0,
) -> Any:
    """Run PQAT, CQAT or PCQAT on a trained, compiled model, fine-tuning between stages.

    Args:
        model: A trained, compiled model of the flavor in use. It is not modified.
        x: Training inputs, as for ``fit`` (arrays or a dataset).
        y: Training targets, as for ``fit``.
        recipe: String or tuple. ``"pqat"`` (prune, QAT), ``"cqat"`` (cluster,
            QAT), ``"pcqat"`` (prune, cluster, QAT), ``"pc"``, a single stage
            (``"prune"``, ``"cluster"``, ``"quantize"``), or a tuple of stages
            in that order.
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
        callbacks: List of callbacks or None, added to every stage's ``fit``
            (e.g. a progress bar or LRScheduler); each stage gets a deep copy.
        verbose: Integer. ``fit`` verbosity.

    Returns:
        The model of the last stage: quantization-aware when the recipe ends
        with QAT (convert it to int8 TFLite directly: the zeros and shared
        values survive the conversion), else stripped.

    Raises:
        TypeError: for a model of the other flavor.
        ValueError: for an unknown recipe or a stage order that cannot be
            preserved, an uncompiled model with no ``loss``/``optimizer``
            given, or bad stage arguments.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> qat = kopt.collaborative(model, x, y, recipe="pcqat", epochs=2)  # doctest: +SKIP
        >>> small = kopt.collaborative(model, x, y, recipe=("prune", "cluster"))  # doctest: +SKIP
    """
    _engine.get_engine("collaborative")
    backend.check_model(model)
    stages = stages_of(recipe)
    _validation.integer("epochs", epochs, minimum=1)
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        _validation.fail("callbacks", "a list of callbacks or None", callbacks, exc=TypeError)
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None or (optimizer is None and getattr(model, "optimizer", None) is None):
        _validation.fail(
            "model",
            "a compiled model, or pass `optimizer=` and `loss=`",
            model.name,
            hint="Call model.compile(...) first",
        )
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
                (): None,
                ("prune",): "sparsity",
                ("cluster",): "clusters",
                ("prune", "cluster"): "both",
            }[stages[:-1]]
            wrapped = quantize(current, preserve=preserve, skip_unsupported=skip_unsupported)
        _compile_like(wrapped, model, optimizer, loss, metrics)
        stage_callbacks = copy.deepcopy(list(callbacks or [])) + pruning_callbacks(wrapped)
        wrapped.fit(x, y, callbacks=stage_callbacks, **fit_args)
        logger.info("Collaborative stage %r done.", stage)
        current = wrapped if stage == "quantize" else strip(wrapped)
    return current
