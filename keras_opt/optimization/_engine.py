"""The engine behind `keras_opt.optimization`: TFMOT today, a native one later.

Every public function (``prune``, ``quantize``, ``cluster``, ``strip`` ...)
asks `get_engine` for the engine that serves the Keras flavor in use and calls
it; none of them imports TFMOT itself. TFMOT 0.8.1 only accepts tf_keras
models, so under Keras 3 `get_engine` raises one `FlavorError` that says how to
switch. A Keras 3 engine can later be registered in `_ENGINES` without any
change to the public functions.

Wrapper classes are recognized by name (`wrapper_kind`), so that code reading
weights (``summary``) works in both flavors without importing TFMOT.
"""

from __future__ import annotations

import types
from typing import Any

from keras_opt import backend

PRUNE_WRAPPERS = frozenset({"PruneLowMagnitude"})
CLUSTER_WRAPPERS = frozenset({"ClusterWeights", "ClusterWeightsRNN", "ClusterWeightsMHA"})
QUANTIZE_WRAPPERS = frozenset({"QuantizeWrapper", "QuantizeWrapperV2"})
QUANTIZE_LAYERS = frozenset({"QuantizeLayer"})


def wrapper_kind(layer: Any) -> str | None:
    """Return ``"prune"``, ``"cluster"``, ``"quantize"`` or None for ``layer``."""
    name = type(layer).__name__
    if name in PRUNE_WRAPPERS:
        return "prune"
    if name in CLUSTER_WRAPPERS:
        return "cluster"
    if name in QUANTIZE_WRAPPERS or name in QUANTIZE_LAYERS:
        return "quantize"
    return None


def unwrap(layer: Any) -> Any:
    """Return the innermost layer under any stack of TFMOT wrappers."""
    while wrapper_kind(layer) is not None and hasattr(layer, "layer"):
        layer = layer.layer
    return layer


class TFMOTEngine:
    """Thin access to the TFMOT pieces keras_opt uses (tf_keras flavor only)."""

    name = "tfmot"

    def __init__(self) -> None:
        import tensorflow_model_optimization as tfmot

        self.tfmot: types.ModuleType = tfmot

    # Pruning ---------------------------------------------------------------
    def polynomial_decay(self, initial: float, final: float, begin: int, end: int, freq: int):
        return self.tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=initial,
            final_sparsity=final,
            begin_step=begin,
            end_step=end,
            frequency=freq,
        )

    def constant_sparsity(self, target: float, begin: int, freq: int):
        return self.tfmot.sparsity.keras.ConstantSparsity(target, begin_step=begin, frequency=freq)

    def prune_layer(self, layer, schedule, m_by_n: tuple[int, int] | None):
        return self.tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=schedule, sparsity_m_by_n=m_by_n
        )

    def prunable_weights(self, layer) -> list:
        from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

        if isinstance(layer, self.tfmot.sparsity.keras.PrunableLayer):
            return list(layer.get_prunable_weights())
        if not prune_registry.PruneRegistry.supports(layer):
            return []
        return list(prune_registry.PruneRegistry._weight_names(layer))

    def update_pruning_step_class(self) -> type:
        return self.tfmot.sparsity.keras.UpdatePruningStep

    def pruning_summaries(self, log_dir: str):
        return self.tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir)

    def strip_pruning(self, model):
        return self.tfmot.sparsity.keras.strip_pruning(model)

    # Clustering ------------------------------------------------------------
    def centroid_init(self, name: str):
        init = self.tfmot.clustering.keras.CentroidInitialization
        return {
            "kmeans++": init.KMEANS_PLUS_PLUS,
            "linear": init.LINEAR,
            "density": init.DENSITY_BASED,
            "random": init.RANDOM,
        }[name]

    def cluster_layer(self, layer, n: int, init: str, per_channel: bool, preserve_sparsity: bool):
        from tensorflow_model_optimization.python.core.clustering.keras import cluster as _cluster

        return _cluster._cluster_weights(
            layer,
            n,
            self.centroid_init(init),
            preserve_sparsity=preserve_sparsity,
            cluster_per_channel=per_channel,
        )

    def strip_clustering(self, model):
        return self.tfmot.clustering.keras.strip_clustering(model)

    # Quantization ----------------------------------------------------------
    def quantize_registry(self):
        from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
            default_8bit_quantize_registry,
        )

        return default_8bit_quantize_registry.Default8BitQuantizeRegistry()

    def annotate_layer(self, layer):
        return self.tfmot.quantization.keras.quantize_annotate_layer(layer)

    def quantize_apply(self, annotated_model, preserve: str | None):
        if preserve is None:
            return self.tfmot.quantization.keras.quantize_apply(annotated_model)
        combine = self.tfmot.experimental.combine
        if preserve == "sparsity":
            scheme = combine.Default8BitPrunePreserveQuantizeScheme()
        else:
            scheme = combine.Default8BitClusterPreserveQuantizeScheme(
                preserve_sparsity=preserve == "both"
            )
        return self.tfmot.quantization.keras.quantize_apply(annotated_model, scheme)

    def quantize_scope(self):
        return self.tfmot.quantization.keras.quantize_scope()


_ENGINES: dict[str, type] = {"tf_keras": TFMOTEngine}
_CACHE: dict[str, Any] = {}


def get_engine(feature: str) -> TFMOTEngine:
    """Return the compression engine for the Keras flavor in use.

    Args:
        feature: String. The public function asking, for the error message
            (e.g. ``"prune"``).

    Returns:
        The engine object.

    Raises:
        FlavorError: under Keras 3, which TFMOT does not support; the message
            says to set ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported.
    """
    flavor = backend.flavor()
    if flavor not in _ENGINES:
        backend.require_flavor(
            "tf_keras",
            f"keras_opt.optimization.{feature} (built on TFMOT 0.8.1, which only accepts "
            "tf_keras models)",
        )
    if flavor not in _CACHE:
        _CACHE[flavor] = _ENGINES[flavor]()
    return _CACHE[flavor]
