"""Which weights of a Keras 3 layer are compressed, and along which axes.

The kernel-like variables of the supported layers, by attribute name, with
the axis that holds output channels (per-channel clustering) and the axis
that holds input channels (M-by-N groups).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from keras_opt.backend import keras

SUPPORTED = (
    "Dense, EinsumDense, Conv1D/2D/3D, Conv1D/2D/3DTranspose, DepthwiseConv1D/2D, "
    "SeparableConv1D/2D and Embedding"
)


def _layer_classes() -> list[tuple[type, tuple[str, ...]]]:
    layers = keras.layers
    return [
        (layers.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel")),
        (layers.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel")),
        (layers.DepthwiseConv1D, ("kernel",)),
        (layers.DepthwiseConv2D, ("kernel",)),
        (layers.Conv1DTranspose, ("kernel",)),
        (layers.Conv2DTranspose, ("kernel",)),
        (layers.Conv3DTranspose, ("kernel",)),
        (layers.Conv1D, ("kernel",)),
        (layers.Conv2D, ("kernel",)),
        (layers.Conv3D, ("kernel",)),
        (layers.Dense, ("kernel",)),
        (layers.EinsumDense, ("kernel",)),
        (layers.Embedding, ("embeddings",)),
    ]


def kernel_names(layer: Any) -> tuple[str, ...]:
    """The attribute names of ``layer``'s compressible weights; ``()`` if unsupported."""
    for cls, names in _layer_classes():
        if isinstance(layer, cls):
            return names
    return ()


def kernel_variables(layer: Any) -> dict[str, Any]:
    """``{attribute: variable}`` for ``layer``'s compressible weights (layer built)."""
    out = {}
    for name in kernel_names(layer):
        value = getattr(layer, name, None)
        if not isinstance(value, keras.Variable):
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no plain `{name}` "
                "variable (LoRA enabled, or already quantized?): it cannot be compressed."
            )
        out[name] = value
    return out


_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)


def output_axis(layer: Any, name: str, rank: int) -> int:
    """Axis of output channels of ``layer``'s weight ``name``."""
    if isinstance(layer, _TRANSPOSED) or name == "depthwise_kernel":
        return rank - 2  # (..., out, in), and (..., in, multiplier) per input channel
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        return rank - 2
    return rank - 1


def input_axis(layer: Any, name: str, rank: int) -> int:
    """Axis of input channels (M-by-N groups run along it)."""
    if isinstance(layer, keras.layers.Embedding):
        return rank - 1
    if isinstance(layer, _TRANSPOSED):
        return rank - 1
    if rank == 1:
        return 0
    return rank - 2 if rank > 2 else 0


@contextlib.contextmanager
def substitute(mapping: list[tuple[Any, Any]]) -> Iterator[None]:
    """Read each variable of ``mapping`` as the given tensor inside the block.

    A Keras ``StatelessScope``: the wrapped layer's ``call`` reads its kernel
    through ``variable.value``, so it sees the compressed kernel. An enclosing
    stateless scope's mapping is kept.
    """
    from keras.src.backend.common import stateless_scope

    outer = stateless_scope.get_stateless_scope()
    scope = keras.StatelessScope(state_mapping=mapping)
    if outer is not None:
        merged = dict(outer.state_mapping)
        merged.update(scope.state_mapping)
        scope.state_mapping = merged
        scope.collect_losses = outer.collect_losses
    with scope:
        yield
    if outer is not None:
        outer.losses.extend(scope.losses)
