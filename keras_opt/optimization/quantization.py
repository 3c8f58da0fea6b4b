"""Quantization-aware training that never stops half-way, in both Keras flavors.

`check_quantizable` is a dry run: it lists every layer that cannot be quantized to int8,
with the reason and a fix (TFMOT itself stops at the first one, deep inside
``quantize_apply``: model-optimization #363, #602, #647). `quantize` wraps the
whole model or chosen layers; with ``skip_unsupported=True`` the unsupported
layers stay in float. Nested models are inlined first (#957).

* Keras 3: keras_opt's native engine. Kernels are fake-quantized per output
  channel (8-bit, symmetric, narrow range), Dense included: a Dense layer runs
  as a 1x1 convolution of its kernel during QAT, and lands in the ``.tflite``
  file as a per-channel int8 ``CONV_2D`` (TF 2.21's converter rejects a
  per-channel fake-quantized MatMul). Activations per tensor with
  moving-average ranges; Conv/Depthwise + BatchNormalization are folded and
  ReLU/ReLU6 fused, so the converter leaves no float op between int8 kernels.
* tf_keras: TFMOT's default 8-bit scheme (``quantize_apply``; Dense kernels per
  tensor, in ``FULLY_CONNECTED``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from keras_opt import _validation, backend
from keras_opt.optimization import _engine, _graph
from keras_opt.optimization.layers import Selection, select_layers

__all__ = ["check_quantizable", "quantize", "CompatibilityReport", "UnsupportedLayer"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class UnsupportedLayer:
    """A layer that cannot be quantized to int8 (by the engine of the flavor in use)."""

    name: str
    type: str
    reason: str
    fix: str


@dataclasses.dataclass(frozen=True)
class CompatibilityReport:
    """Result of `check_quantizable`: ``ok`` is True when every layer can be quantized."""

    unsupported: tuple[UnsupportedLayer, ...]
    nested_models: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every layer can be quantized."""
        return not self.unsupported

    @property
    def names(self) -> list[str]:
        """Names of the unsupported layers."""
        return [u.name for u in self.unsupported]

    def __str__(self) -> str:
        if self.ok:
            return "All layers can be quantized to int8."
        lines = [f"{len(self.unsupported)} layer(s) cannot be quantized to int8:"]
        for u in self.unsupported:
            lines.append(f"- {u.name} ({u.type}): {u.reason} Fix: {u.fix}")
        return "\n".join(lines)


def check_quantizable(model: Any) -> CompatibilityReport:
    """Dry run: list every layer that cannot be quantized, without wrapping anything.

    Args:
        model: A built Sequential or Functional model of the flavor in use;
            nested models are looked into (`quantize` inlines them).

    Returns:
        A `CompatibilityReport` with one `UnsupportedLayer` (name, type,
        reason, fix) per layer; ``print()`` it for a readable list.

    Raises:
        TypeError: for a subclassed model or a model of the other flavor.
        ValueError: for a model that already carries compression wrappers.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> report = kopt.check_quantizable(model)  # doctest: +SKIP
        >>> print(report)  # doctest: +SKIP
        1 layer(s) cannot be quantized to int8:
        - rescaling (Rescaling): preprocessing layers are not part of ... Fix: ...
    """
    engine = _engine.get_engine("check")
    backend.check_model(model)
    _graph.require_graph_model(model)
    nested = tuple(layer.name for layer in model.layers if isinstance(layer, backend.keras.Model))
    for layer in _graph.iter_layers(model):
        kind = _engine.wrapper_kind(layer)
        if kind == "quantize":
            _validation.fail(
                "model",
                "a model that is not quantization-aware yet",
                model.name,
                hint=f"Layer {layer.name!r} is already quantized: convert this model to int8 "
                "as it is, or quantize the model it came from",
            )
        if kind is not None:
            _validation.fail(
                "model",
                "a model without compression wrappers",
                model.name,
                hint=f"Layer {layer.name!r} is wrapped ({kind}): call "
                "keras_opt.optimization.strip first",
            )
    return CompatibilityReport(tuple(engine.unsupported_layers(model)), nested)


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
    Keras 3 is served by keras_opt's native engine, tf_keras by TFMOT.

    Args:
        model: A built Sequential or Functional model of the flavor in use;
            nested models are inlined. It is not modified.
        layers: Layer names, compiled regexes or classes to quantize; None
            quantizes every layer.
        skip: Layer selectors to keep in float.
        skip_unsupported: Boolean. Keep the layers `check_quantizable` reports in float
            instead of raising.
        preserve: None, ``"sparsity"`` (PQAT), ``"clusters"`` (CQAT) or
            ``"both"`` (PCQAT): keep the zeros / shared values of a pruned and/or
            clustered model through QAT.

    Returns:
        A new model: keras_opt's ``QuantizeKernel``/``QuantizeOutput`` wrappers
        under Keras 3, TFMOT's ``QuantizeWrapperV2`` under tf_keras.

    Raises:
        TypeError: for a model of the other flavor or a subclassed model.
        ValueError: when chosen layers cannot be quantized and
            ``skip_unsupported`` is False (the message is the
            `check_quantizable` report),
            for a model that is already quantized, when ``preserve`` asks for
            clusters the model does not have, and for unknown layer names or
            ``preserve`` values.

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
    report = check_quantizable(model)
    flat = _graph.flatten_nested(model)
    all_layers = list(_graph.iter_layers(flat))
    chosen = select_layers(all_layers, layers, skip, what="quantized")
    layer_names = {layer.name for layer in all_layers}
    # A raw op in the graph (not a layer, so never chosen or skipped by name) blocks too.
    blocked = [u for u in report.unsupported if u.name in chosen or u.name not in layer_names]
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
    return engine.quantize(flat, chosen, preserve)
