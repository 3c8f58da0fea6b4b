"""Read the main weight tensor of a (possibly wrapped) layer as numpy."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_opt.optimization._engine import unwrap, wrapper_kind

KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


def main_weights(layer: Any) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` for the kernel-like weights of ``layer``'s inner layer.

    For a wrapped layer these are the values the layer computes with: masked
    (pruning) or shared (clustering).
    """
    if hasattr(layer, "compressed_values"):  # keras_opt's native wrappers
        return {name: np.asarray(v) for name, v in layer.compressed_values().items()}
    if wrapper_kind(layer) == "cluster" and hasattr(layer, "update_clustered_weights_associations"):
        # As TFMOT's strip_clustering does: write the clustered values into the layer.
        layer.update_clustered_weights_associations()
    inner = unwrap(layer)
    variables = named_variables(layer)
    out = {}
    for name in KERNEL_NAMES:
        value = getattr(inner, name, None)
        if value is None:
            continue
        try:
            out[name] = np.asarray(value)
        except (TypeError, ValueError, NotImplementedError):
            # A QAT wrapper replaced the attribute by a symbolic fake-quant tensor.
            if name in variables:
                out[name] = np.asarray(variables[name].numpy())
    return out


def short_name(variable: Any) -> str:
    """``"stem/kernel:0"`` -> ``"kernel"``."""
    return str(variable.name).split("/")[-1].split(":")[0]


def named_variables(layer: Any) -> dict[str, Any]:
    """The inner layer's variables by short name, including those a QAT wrapper took over."""
    variables = {short_name(v): v for v in unwrap(layer).weights}
    while wrapper_kind(layer) is not None:
        for entry in getattr(layer, "_weight_vars", []):
            variables[short_name(entry[0])] = entry[0]
        if not hasattr(layer, "layer"):
            break
        layer = layer.layer
    return variables


def sparsity(array: np.ndarray) -> float:
    """Fraction of exact zeros."""
    return float(np.mean(array == 0)) if array.size else 0.0


def unique_count(array: np.ndarray) -> int:
    """Number of distinct values."""
    return int(np.unique(array).size)
