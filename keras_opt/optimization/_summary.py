"""What compression did to a model, read from its weights (both Keras flavors)."""

from __future__ import annotations

import dataclasses
from typing import Any

from keras_opt import backend
from keras_opt.optimization import _engine, _weights

__all__ = ["compression_summary", "CompressionSummary", "LayerSummary"]


@dataclasses.dataclass(frozen=True)
class LayerSummary:
    """One layer's compression state.

    Attributes:
        name: The layer name (of the wrapper, if wrapped).
        type: The inner layer's class name.
        wrappers: Tuple of wrapper kinds around it: ``"prune"``, ``"cluster"``,
            ``"quantize"``.
        weights: Number of kernel weights (0 for layers without a kernel).
        sparsity: Fraction of kernel weights that are exactly zero.
        unique_values: Number of distinct kernel values.
        quantized: Whether a quantization-aware wrapper is on the layer.
        compressible: Whether the layer has weights compression can act on (a
            kernel); layers without (BatchNormalization, pooling...) are listed
            too, with ``weights == 0``, and stay as they are.
    """

    name: str
    type: str
    wrappers: tuple[str, ...]
    weights: int
    sparsity: float
    unique_values: int
    quantized: bool
    compressible: bool = True


@dataclasses.dataclass(frozen=True)
class CompressionSummary:
    """Per-layer compression state of a model; ``str()`` gives a table."""

    layers: tuple[LayerSummary, ...]

    @property
    def sparsity(self) -> float:
        """Fraction of zero kernel weights over all layers."""
        total = sum(row.weights for row in self.layers)
        zeros = sum(row.sparsity * row.weights for row in self.layers)
        return zeros / total if total else 0.0

    def __getitem__(self, name: str) -> LayerSummary:
        for row in self.layers:
            if row.name == name or row.name.endswith(f"_{name}") and row.wrappers:
                return row
        raise KeyError(f"No layer named {name!r}. Layers: {[r.name for r in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "sparsity": self.sparsity,
            "layers": [dataclasses.asdict(row) for row in self.layers],
        }

    def __str__(self) -> str:
        head = (
            f"{'layer':<24}{'type':<20}{'wrappers':<18}{'weights':>9}{'sparsity':>10}{'unique':>8}"
        )
        lines = [head, "-" * len(head)]
        for r in self.layers:
            if not r.compressible:
                lines.append(f"{r.name[:23]:<24}{r.type[:19]:<20}{'-':<18}{'-':>9}")
                continue
            lines.append(
                f"{r.name[:23]:<24}{r.type[:19]:<20}{','.join(r.wrappers) or '-':<18}"
                f"{r.weights:>9}{r.sparsity:>10.1%}{r.unique_values:>8}"
            )
        lines.append(f"overall kernel sparsity: {self.sparsity:.1%}")
        return "\n".join(lines)


def _wrappers(layer: Any) -> tuple[str, ...]:
    kinds = []
    while (kind := _engine.wrapper_kind(layer)) is not None:
        kinds.append(kind)
        if not hasattr(layer, "layer"):
            break
        layer = layer.layer
    return tuple(kinds)


def _walk(model: Any):
    for layer in model.layers:
        if isinstance(layer, backend.keras.Model):
            yield from _walk(layer)
        else:
            yield layer


def compression_summary(model: Any) -> CompressionSummary:
    """Summarize sparsity, unique weight values and quantization, per layer.

    Every number is read from the weights (kernels; biases are left out),
    so it holds for wrapped, stripped and plain models, in both Keras flavors.
    Layers without a kernel are listed with ``compressible=False``.

    Args:
        model: A Keras model of the flavor in use (nested models are walked).

    Returns:
        A `CompressionSummary`; ``print()`` it for a table.

    Raises:
        TypeError: if ``model`` is not a Keras model of the flavor in use.

    Example:
        >>> import numpy as np
        >>> from keras_opt.backend import keras
        >>> from keras_opt.optimization import compression_summary
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")])
        >>> model.layers[0].set_weights([np.zeros((4, 2)), np.zeros(2)])
        >>> report = compression_summary(model)
        >>> row = report["d"]
        >>> row.sparsity, row.unique_values, row.quantized
        (1.0, 1, False)
        >>> [r.name for r in report.layers if r.compressible]
        ['d']
    """
    backend.check_model(model)
    rows = []
    for layer in _walk(model):
        if type(layer).__name__ == "InputLayer":
            continue
        arrays = list(_weights.main_weights(layer).values())
        n = sum(a.size for a in arrays)
        zeros = sum(int((a == 0).sum()) for a in arrays)
        wrappers = _wrappers(layer)
        rows.append(
            LayerSummary(
                name=layer.name,
                type=type(_engine.unwrap(layer)).__name__,
                wrappers=wrappers,
                weights=int(n),
                sparsity=zeros / n if n else 0.0,
                unique_values=max((_weights.unique_count(a) for a in arrays), default=0),
                quantized="quantize" in wrappers,
                compressible=bool(arrays),
            )
        )
    return CompressionSummary(tuple(rows))
