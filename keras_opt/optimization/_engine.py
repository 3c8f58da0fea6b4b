"""The seam between `keras_opt.optimization` and its two engines.

Every public function (``prune``, ``cluster``, ``strip`` ...) validates its
arguments, then asks `get_engine` for the engine that serves the Keras flavor
in use and calls it; none of them imports an engine itself.

* Keras 3: keras_opt's native engine (`keras_opt.optimization._native`),
  written on Keras 3 and TensorFlow ops: pruning and clustering.
* tf_keras: TFMOT 0.8.1 (`keras_opt.optimization._tfmot`): pruning,
  clustering and quantization-aware training.

`wrapper_kind` recognizes both engines' wrappers without importing either,
so code that reads weights (`compression_summary`) works everywhere.
"""

from __future__ import annotations

from typing import Any

from keras_opt import backend

PRUNE_WRAPPERS = frozenset({"PruneLowMagnitude"})
CLUSTER_WRAPPERS = frozenset({"ClusterWeights", "ClusterWeightsRNN", "ClusterWeightsMHA"})
QUANTIZE_WRAPPERS = frozenset({"QuantizeWrapper", "QuantizeWrapperV2"})
QUANTIZE_LAYERS = frozenset({"QuantizeLayer"})
FEATURES = frozenset(
    {"prune", "cluster", "strip", "callbacks", "quantize", "check", "collaborative"}
)
"""What every engine serves."""


def wrapper_kind(layer: Any) -> str | None:
    """Return ``"prune"``, ``"cluster"``, ``"quantize"`` or None for ``layer``."""
    native = getattr(type(layer), "compression_kind", None)
    if native is not None:
        return str(native)
    name = type(layer).__name__
    if name in PRUNE_WRAPPERS:
        return "prune"
    if name in CLUSTER_WRAPPERS:
        return "cluster"
    if name in QUANTIZE_WRAPPERS or name in QUANTIZE_LAYERS:
        return "quantize"
    return None


def compression_of(model: Any) -> frozenset[str]:
    """Which compression ``model`` carries: a subset of ``{"prune", "cluster", "quantize"}``.

    Both engines' wrappers count (keras_opt's native ones under Keras 3,
    TFMOT's under tf_keras), nested models included. A stripped or plain
    model carries none.

    Args:
        model: A Keras model of the flavor in use.

    Returns:
        Frozenset of strings.

    Raises:
        TypeError: if ``model`` is not a Keras model of the flavor in use.

    Example:
        >>> from keras_opt.backend import keras
        >>> from keras_opt.optimization import compression_of
        >>> compression_of(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
        frozenset()
    """
    from keras_opt.optimization._graph import iter_layers

    backend.check_model(model)
    kinds = set()
    for layer in iter_layers(model):
        # A wrapper may hold another (e.g. a TFMOT quantize wrapper around a pruned layer).
        while (kind := wrapper_kind(layer)) is not None:
            kinds.add(kind)
            layer = getattr(layer, "layer", None)
    return frozenset(kinds)


def unwrap(layer: Any) -> Any:
    """Return the innermost layer under any stack of compression wrappers."""
    while wrapper_kind(layer) is not None and hasattr(layer, "layer"):
        layer = layer.layer
    return layer


def _native() -> Any:
    from keras_opt.optimization._native import NativeEngine

    return NativeEngine()


def _tfmot() -> Any:
    from keras_opt.optimization._tfmot import TFMOTEngine

    return TFMOTEngine()


_ENGINES = {"keras3": _native, "tf_keras": _tfmot}
_CACHE: dict[str, Any] = {}


def get_engine(feature: str) -> Any:
    """Return the compression engine for the Keras flavor in use.

    Args:
        feature: String. The public function asking (e.g. ``"prune"``); both
            engines serve every function, so it only names the caller.

    Returns:
        The engine object (``NativeEngine`` under Keras 3, ``TFMOTEngine`` under
        tf_keras), created once per process.

    Raises:
        ValueError: for a feature no engine serves (a keras_opt bug).
    """
    flavor = backend.flavor()
    if flavor not in _CACHE:
        _CACHE[flavor] = _ENGINES[flavor]()
    engine = _CACHE[flavor]
    if feature not in engine.features:
        raise ValueError(f"No compression engine serves {feature!r}. Received: feature={feature!r}")
    return engine
