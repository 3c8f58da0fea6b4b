"""The base of keras_opt's native compression wrappers."""

from __future__ import annotations

from typing import Any

from keras_opt.backend import keras


class CompressionWrapper(keras.layers.Wrapper):
    """A Keras 3 ``Wrapper`` that keeps the wrapped layer's name and output shape.

    ``compression_kind`` (``"prune"``, ``"cluster"``, ``"quantize"``) is how
    `keras_opt.optimization.compression_of` recognizes it without importing it.
    """

    compression_kind = ""

    def __init__(self, layer: Any, **kwargs: Any) -> None:
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.layer.compute_output_shape(input_shape)
