"""`ClusterWeights`: weight clustering of a Keras 3 layer (N shared values per kernel).

Each kernel is replaced in the forward pass by its nearest centroid, weight
by weight; the centroids are trainable and the original weights get a
straight-through gradient, so a weight can move to another cluster while it
fine-tunes (as TFMOT's ``cluster_weights``). Per channel, each output channel
has its own centroids. With ``preserve_sparsity`` a mask keeps zeros at zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from keras import ops

from keras_opt.backend import keras
from keras_opt.optimization._native import kernels
from keras_opt.optimization._native._wrapper import CompressionWrapper

__all__ = ["ClusterWeights", "initial_centroids"]


def initial_centroids(values: np.ndarray, n: int, init: str, seed: int = 0) -> np.ndarray:
    """``n`` starting centroids for the 1-D array ``values`` (sorted ascending).

    Inits as TFMOT's ``CentroidInitialization``: ``"linear"`` (evenly spaced
    from min to max), ``"random"`` (uniform in [min, max]), ``"density"``
    (evenly spaced quantiles of the values) and ``"kmeans++"`` (scikit-learn's
    ``kmeans_plusplus`` on the values).

    Example:
        >>> import numpy as np
        >>> initial_centroids(np.array([0.0, 1.0, 2.0, 3.0]), 2, "linear").tolist()
        [0.0, 3.0]
    """
    values = np.asarray(values, dtype="float64").ravel()
    if values.size == 0:
        return np.zeros(n, dtype="float32")
    low, high = float(values.min()), float(values.max())
    if init == "linear":
        out = np.linspace(low, high, n)
    elif init == "random":
        out = np.random.RandomState(seed).uniform(low, high, n)
    elif init == "density":
        out = np.quantile(values, np.linspace(0.0, 1.0, n))
    else:
        from sklearn.cluster import kmeans_plusplus

        sample = values
        if sample.size > 20_000:
            sample = np.random.RandomState(seed).choice(values, 20_000, replace=False)
        if np.unique(sample).size >= n:
            out, _ = kmeans_plusplus(sample[:, None], n, random_state=seed)
            out = out[:, 0]
        else:
            out = np.linspace(low, high, n)
    return np.sort(out).astype("float32")


@keras.saving.register_keras_serializable(package="keras_opt")
class ClusterWeights(CompressionWrapper):
    """Shares ``number_of_clusters`` values per kernel (or per output channel).

    Made by `keras_opt.optimization.cluster` under Keras 3; removed by
    `keras_opt.optimization.strip`, which writes the clustered kernel into a
    plain copy of the layer.

    Args:
        layer: A built Keras 3 layer with a kernel.
        number_of_clusters: Integer >= 2.
        init: String. Centroid init (see `initial_centroids`).
        per_channel: Boolean. Separate centroids per output channel.
        preserve_sparsity: Boolean. Keep zero weights at zero; zero is then one
            of the ``number_of_clusters`` values.
        **kwargs: Layer arguments (``name``...).

    Returns:
        A Keras layer.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> kopt.cluster(model, 16).get_layer("head")  # doctest: +SKIP
        <ClusterWeights name=head, built=True>
    """

    compression_kind = "cluster"

    def __init__(
        self,
        layer: Any,
        number_of_clusters: int,
        init: str = "kmeans++",
        per_channel: bool = False,
        preserve_sparsity: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(layer, **kwargs)
        self.number_of_clusters = int(number_of_clusters)
        self.init = init
        self.per_channel = bool(per_channel)
        self.preserve_sparsity = bool(preserve_sparsity)
        if not kernels.kernel_names(layer):
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no weights that can be "
                f"clustered. Clusterable layers: {kernels.SUPPORTED}."
            )

    @property
    def _free_centroids(self) -> int:
        # With preserve_sparsity, zero is one of the N values: N - 1 are learned.
        return self.number_of_clusters - int(self.preserve_sparsity)

    def _channels(self, name: str, var: Any) -> tuple[int, int]:
        rank = len(var.shape)
        axis = kernels.output_axis(self.layer, name, rank)
        return axis, (int(var.shape[axis]) if self.per_channel else 1)

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        self._kernels = kernels.kernel_variables(self.layer)
        self.centroids, self.sparsity_masks = {}, {}
        for name, var in self._kernels.items():
            _, channels = self._channels(name, var)
            self.centroids[name] = self.add_weight(
                name=f"{name}_centroids",
                shape=(channels, self._free_centroids),
                initializer="zeros",
                dtype=var.dtype,
                trainable=True,
            )
            if self.preserve_sparsity:
                self.sparsity_masks[name] = self.add_weight(
                    name=f"{name}_sparsity_mask",
                    shape=var.shape,
                    initializer="ones",
                    dtype=var.dtype,
                    trainable=False,
                )
        self.built = True

    def initialize_centroids(self) -> None:
        """Set the centroids (and sparsity masks) from the wrapped layer's trained kernels."""
        for name, var in self._kernels.items():
            axis, channels = self._channels(name, var)
            values = np.moveaxis(ops.convert_to_numpy(var.value), axis, 0)
            values = values.reshape(channels, -1) if self.per_channel else values.reshape(1, -1)
            rows = []
            for row in values:
                kept = row[row != 0] if self.preserve_sparsity else row
                rows.append(initial_centroids(kept, self._free_centroids, self.init))
            self.centroids[name].assign(np.stack(rows))
            if self.preserve_sparsity:
                mask = (ops.convert_to_numpy(var.value) != 0).astype(var.dtype)
                self.sparsity_masks[name].assign(mask)

    def _clustered(self, name: str, var: Any) -> Any:
        """The kernel with each weight replaced by its nearest centroid (STE gradient)."""
        axis, channels = self._channels(name, var)
        weights = tf.convert_to_tensor(var.value)
        moved = ops.moveaxis(weights, axis, 0)
        moved_shape = ops.shape(moved)
        rows = ops.reshape(moved, (channels, -1))
        centroids = tf.convert_to_tensor(self.centroids[name].value)
        distance = ops.abs(ops.expand_dims(rows, -1) - ops.expand_dims(centroids, 1))
        indices = ops.stop_gradient(ops.argmin(distance, axis=-1))
        clustered = ops.take_along_axis(centroids, indices, axis=1)
        clustered = ops.moveaxis(ops.reshape(clustered, moved_shape), 0, axis)
        # Straight-through: the value is exactly the centroid, the gradient also reaches
        # the weights (parenthesised so that the sum adds an exact zero).
        out = clustered + (weights - ops.stop_gradient(weights))
        if self.preserve_sparsity:
            out = out * self.sparsity_masks[name].value
        return out

    def call(self, inputs: Any, training: Any = None, **kwargs: Any) -> Any:
        mapping = [(var, self._clustered(n, var)) for n, var in self._kernels.items()]
        with kernels.substitute(mapping):
            return self.layer(inputs, **kwargs)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            number_of_clusters=self.number_of_clusters,
            init=self.init,
            per_channel=self.per_channel,
            preserve_sparsity=self.preserve_sparsity,
        )
        return config

    def compressed_values(self) -> dict[str, Any]:
        """``{attribute: numpy clustered kernel}``, what `strip` writes into the layer."""
        return {
            name: ops.convert_to_numpy(self._clustered(name, var))
            for name, var in self._kernels.items()
        }
