"""Quantization-aware training (TFMOT ``quantize_apply``) that never stops half-way.

`check` is a dry run: it lists every layer TFMOT's default 8-bit scheme cannot
quantize, with the reason and a fix (TFMOT itself stops at the first one,
deep inside ``quantize_apply``: model-optimization #363, #602, #647).
`quantize` wraps the whole model or chosen layers; with
``skip_unsupported=True`` the unsupported layers stay in float. Nested models
are inlined first (#957); Conv+BatchNorm and residual adds are handled by
TFMOT's own transforms.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import tensorflow as tf

from keras_opt import _validation, backend
from keras_opt.optimization import _engine, _graph
from keras_opt.optimization.layers import Selection, select_layers

__all__ = ["check", "quantize", "CompatibilityReport", "UnsupportedLayer"]

logger = logging.getLogger(__name__)

_BN_PRODUCERS = ("Conv2D", "DepthwiseConv2D")
_PREPROCESSING = ("Rescaling", "Normalization", "Resizing", "CenterCrop", "RandomFlip")


@dataclasses.dataclass(frozen=True)
class UnsupportedLayer:
    """A layer TFMOT's default 8-bit scheme cannot quantize."""

    name: str
    type: str
    reason: str
    fix: str


@dataclasses.dataclass(frozen=True)
class CompatibilityReport:
    """Result of `check`: ``ok`` is True when every layer can be quantized."""

    unsupported: tuple[UnsupportedLayer, ...]
    nested_models: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when TFMOT can quantize every layer."""
        return not self.unsupported

    @property
    def names(self) -> list[str]:
        """Names of the unsupported layers."""
        return [u.name for u in self.unsupported]

    def __str__(self) -> str:
        if self.ok:
            return "All layers can be quantized by TFMOT's default 8-bit scheme."
        lines = [f"{len(self.unsupported)} layer(s) TFMOT cannot quantize:"]
        for u in self.unsupported:
            lines.append(f"- {u.name} ({u.type}): {u.reason} Fix: {u.fix}")
        return "\n".join(lines)


def _producers(model: Any) -> dict[int, list[str]]:
    """Map id(layer) to the class names of the layers feeding it, in ``model``'s graph."""
    out: dict[int, list[str]] = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            parents = tf.nest.flatten(node.inbound_layers)
            out.setdefault(id(node.layer), []).extend(type(p).__name__ for p in parents)
    return out


def _diagnose(layer: Any, producers: list[str]) -> UnsupportedLayer | None:
    kind = type(layer).__name__
    skip_fix = "or pass skip_unsupported=True to keep it in float."
    if kind == "BatchNormalization":
        if producers and all(p in _BN_PRODUCERS for p in producers):
            return None
        return UnsupportedLayer(
            layer.name,
            kind,
            "TFMOT quantizes BatchNormalization only right after Conv2D/DepthwiseConv2D "
            f"(here after {', '.join(producers) or 'nothing'}).",
            "Fold it into the previous layer or move it after a convolution, " + skip_fix,
        )
    if kind in ("TFOpLambda", "SlicingOpLambda", "Lambda"):
        return UnsupportedLayer(
            layer.name,
            kind,
            "a raw TensorFlow op or Lambda has no quantization recipe in TFMOT.",
            "Replace it with a Keras layer (e.g. keras.layers.Multiply, Add, Rescaling) or "
            "annotate it with a tfmot QuantizeConfig, " + skip_fix,
        )
    if kind in _PREPROCESSING:
        return UnsupportedLayer(
            layer.name,
            kind,
            "preprocessing layers are not in TFMOT's 8-bit registry.",
            "Move the preprocessing into the input pipeline (tf.data), " + skip_fix,
        )
    return UnsupportedLayer(
        layer.name,
        kind,
        "this layer type is not in TFMOT's default 8-bit registry.",
        "Annotate it with a tfmot QuantizeConfig "
        "(tfmot.quantization.keras.quantize_annotate_layer), " + skip_fix,
    )


def _supported(registry: Any, layer: Any, producers: list[str]) -> bool:
    kind = type(layer).__name__
    if kind == "InputLayer" or registry.supports(layer):
        return True
    if kind == "BatchNormalization":
        return _diagnose(layer, producers) is None
    return False


def check(model: Any) -> CompatibilityReport:
    """Dry run: list every layer TFMOT cannot quantize, without wrapping anything.

    Args:
        model: A built tf_keras Sequential or Functional model; nested models
            are looked into (`quantize` inlines them).

    Returns:
        A `CompatibilityReport` with one `UnsupportedLayer` (name, type,
        reason, fix) per layer; ``print()`` it for a readable list.

    Raises:
        FlavorError: under Keras 3.
        TypeError: for a subclassed model or a model of the other flavor.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> report = kopt.check(model)  # doctest: +SKIP
        >>> print(report)  # doctest: +SKIP
        1 layer(s) TFMOT cannot quantize:
        - rescaling (Rescaling): preprocessing layers are not in ... Fix: ...
    """
    engine = _engine.get_engine("check")
    backend.check_model(model)
    _graph.require_graph_model(model)
    registry = engine.quantize_registry()
    nested = tuple(layer.name for layer in model.layers if isinstance(layer, backend.keras.Model))
    flat = _graph.flatten_nested(model)
    producers = _producers(flat)
    unsupported = []
    for layer in flat.layers:
        if _engine.wrapper_kind(layer) is not None:
            _validation.fail(
                "model",
                "a model without TFMOT wrappers",
                model.name,
                hint=f"Layer {layer.name!r} is wrapped: call keras_opt.optimization.strip first",
            )
        parents = producers.get(id(layer), [])
        if not _supported(registry, layer, parents):
            diagnosis = _diagnose(layer, parents)
            if diagnosis is not None:
                unsupported.append(diagnosis)
    return CompatibilityReport(tuple(unsupported), nested)


def quantize(
    model: Any,
    *,
    layers: Selection = None,
    skip: Selection = None,
    skip_unsupported: bool = False,
    preserve: str | None = None,
) -> Any:
    """Return a quantization-aware (fake-quant int8) copy of ``model`` for fine-tuning.

    Compile and fit the result as usual (no callback needed); convert it
    directly with ``tf.lite.TFLiteConverter`` (``optimizations=[DEFAULT]``) for an
    int8 model, or `strip` it for a float model with the fine-tuned weights.

    Args:
        model: A built tf_keras Sequential or Functional model; nested models are
            inlined. It is not modified.
        layers: Layer names, compiled regexes or classes to quantize; None
            quantizes every layer.
        skip: Layer selectors to keep in float.
        skip_unsupported: Boolean. Keep the layers `check` reports in float
            instead of raising.
        preserve: None, ``"sparsity"`` (PQAT), ``"clusters"`` (CQAT) or
            ``"both"`` (PCQAT): keep the zeros / shared values of a pruned and/or
            clustered model through QAT.

    Returns:
        A new tf_keras model with TFMOT ``QuantizeWrapperV2`` wrappers.

    Raises:
        FlavorError: under Keras 3.
        ValueError: when chosen layers cannot be quantized and
            ``skip_unsupported`` is False (the message is the `check` report),
            and for unknown layer names or ``preserve`` values.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> qat = kopt.quantize(model, skip_unsupported=True)  # doctest: +SKIP
        >>> qat.compile("adam", "sparse_categorical_crossentropy")  # doctest: +SKIP
        >>> qat.fit(x, y, epochs=1)  # doctest: +SKIP
    """
    engine = _engine.get_engine("quantize")
    if not isinstance(skip_unsupported, bool):
        _validation.fail("skip_unsupported", "a boolean", skip_unsupported, exc=TypeError)
    _validation.one_of("preserve", preserve, (None, "sparsity", "clusters", "both"))
    report = check(model)
    flat = _graph.flatten_nested(model)
    chosen = select_layers(flat.layers, layers, skip, what="quantized")
    blocked = [u for u in report.unsupported if u.name in chosen]
    if blocked and not skip_unsupported:
        raise ValueError(
            str(CompatibilityReport(tuple(blocked)))
            + "\nPass skip_unsupported=True to keep these layers in float, or `skip=[...]` them."
        )
    if blocked:
        logger.warning(
            "Keeping %d layer(s) in float: %s", len(blocked), ", ".join(u.name for u in blocked)
        )
    chosen -= {u.name for u in blocked}

    def annotate(layer: Any) -> Any:
        return engine.annotate_layer(layer) if layer.name in chosen else layer

    annotated = _graph.copy_model(flat, annotate)
    with engine.quantize_scope():
        return engine.quantize_apply(annotated, preserve)
