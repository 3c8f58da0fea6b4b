"""Weight clustering: N shared values per kernel, in both Keras flavors.

Keras 3 is served by keras_opt's native engine (centroids and the
nearest-centroid assignment run in the layer's call, with a straight-through
gradient), tf_keras by TFMOT's ``cluster_weights``. Neither needs a callback.
"""

from __future__ import annotations

import logging
from typing import Any

from keras_opt import _validation, backend
from keras_opt.optimization import _engine, _graph
from keras_opt.optimization.layers import Selection, select_weighted

__all__ = ["cluster", "CENTROID_INITS"]

logger = logging.getLogger(__name__)

CENTROID_INITS = ("kmeans++", "linear", "density", "random")


def cluster(
    model: Any,
    number_of_clusters: int = 16,
    *,
    init: str = "kmeans++",
    per_channel: bool = False,
    preserve_sparsity: bool = False,
    layers: Selection = None,
    skip: Selection = None,
) -> Any:
    """Return a copy of ``model`` whose chosen kernels share ``number_of_clusters`` values.

    Fine-tune the result briefly (no callback needed), then `strip` it: each
    stripped kernel has at most ``number_of_clusters`` distinct values (per
    output channel with ``per_channel=True``).

    Args:
        model: A built Sequential or Functional model of the flavor in use
            (nested models are kept under Keras 3, inlined under tf_keras). It
            is not modified.
        number_of_clusters: Integer >= 2. Distinct values per kernel.
        init: String. Centroid initialization: ``"kmeans++"``, ``"linear"``,
            ``"density"`` or ``"random"``.
        per_channel: Boolean. Cluster each output channel separately (TFMOT:
            Conv2D kernels only; native: every supported layer).
        preserve_sparsity: Boolean. Keep zero weights at zero (for a model
            that was pruned and stripped first).
        layers: Layer names, compiled regexes or classes to cluster; None
            clusters every layer with a kernel.
        skip: Layer selectors to leave unclustered.

    Returns:
        A new model whose clustered layers are ``ClusterWeights`` wrappers
        (keras_opt's under Keras 3, TFMOT's under tf_keras).

    Raises:
        TypeError: for a model of the other flavor or a subclassed model.
        ValueError: for fewer than 2 clusters, an unknown ``init``, a model
            with no clusterable layer, or an unknown layer name.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> clustered = kopt.cluster(model, 16, init="kmeans++")  # doctest: +SKIP
        >>> clustered.compile("adam", "sparse_categorical_crossentropy")  # doctest: +SKIP
        >>> clustered.fit(x, y, epochs=1)  # doctest: +SKIP
        >>> small = kopt.strip(clustered)  # doctest: +SKIP
    """
    engine = _engine.get_engine("cluster")
    backend.check_model(model)
    _graph.require_graph_model(model)
    n = int(_validation.integer("number_of_clusters", number_of_clusters, minimum=2) or 2)
    _validation.one_of("init", init, CENTROID_INITS)
    for name, value in (("per_channel", per_channel), ("preserve_sparsity", preserve_sparsity)):
        if not isinstance(value, bool):
            _validation.fail(name, "a boolean", value, exc=TypeError)

    flat = _graph.flatten_nested(model)
    chosen = select_weighted(
        flat,
        layers,
        skip,
        eligible=lambda layer: bool(engine.clusterable_weights(layer)),
        what="clustered",
    )

    def wrap(layer: Any) -> Any:
        if layer.name not in chosen:
            return layer
        wrapped = engine.cluster_layer(layer, n, init, per_channel, preserve_sparsity)
        if wrapped is layer:
            logger.warning(
                "Layer %r has too few weights for %d clusters; TFMOT leaves it unclustered.",
                layer.name,
                n,
            )
        return wrapped

    return _graph.copy_model(flat, wrap)
