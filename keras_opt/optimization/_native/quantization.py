"""Native quantization-aware training for Keras 3: fake-quant wrappers the TFLite converter reads.

Kernels are fake-quantized to 8 bits, symmetric and narrow range (what
TFLite's int8 kernels use), per output channel for convolutions and Dense;
activations per tensor, with ranges learned as moving averages in the train
step. TF 2.21's converter rejects a per-channel fake-quantized MatMul kernel
("'tfl.transpose' op has mismatched quantized axes"; TFMOT's default scheme
falls back to per tensor for Dense), so a Dense layer whose input has static
inner dimensions runs as a 1x1 convolution of the same kernel: it converts to
an int8 ``CONV_2D`` with one scale per output unit, between two ``RESHAPE``
ops. A Dense layer on inputs with unknown inner dimensions keeps a per-tensor
kernel range and converts to ``FULLY_CONNECTED``. Both go through TensorFlow's
``FakeQuantWithMinMaxVars[PerChannel]`` ops, which the converter turns into
int8 tensors with ``Optimize.DEFAULT``.

`QuantizeKernel` wraps Conv1D/Conv2D, DepthwiseConv2D and Dense (with a
folded BatchNormalization and a fused ReLU/ReLU6 when the graph has them);
`QuantizeOutput` gives Add, Concatenate, pooling, activations and the model
input the output range the converter needs. With ``preserve`` the kernel keeps
its zeros (PQAT), its shared values per channel (CQAT), or both (PCQAT).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from keras import ops

from keras_opt.backend import keras
from keras_opt.optimization._native import kernels
from keras_opt.optimization._native._wrapper import CompressionWrapper

__all__ = ["QuantizeKernel", "QuantizeOutput", "EMA_DECAY"]

EMA_DECAY = 0.99
"""Moving-average decay of the activation ranges (initialized from the first batch)."""

PRE_QUANT_ACTIVATIONS = ("softmax", "sigmoid", "tanh")
"""Activations quantized on their input: TFLite fixes their output range itself."""


def _static_inner(input_shape: Any) -> bool:
    """True when every dimension but the batch (first) is known."""
    if input_shape is None:
        return False
    dims = tuple(input_shape)[1:]
    return len(dims) >= 1 and all(d is not None for d in dims)


def _replica_mean(name: str, shape: Any, value: float, dtype: str = "float32") -> Any:
    return keras.Variable(
        np.full(shape, value, dtype=dtype),
        trainable=False,
        name=name,
        aggregation="mean",
    )


class _Range:
    """Per-tensor min/max of an activation, learned as a moving average."""

    def __init__(self, owner: Any, name: str) -> None:
        self.min = _replica_mean(f"{name}_min", (), -6.0)
        self.max = _replica_mean(f"{name}_max", (), 6.0)
        self.seen = _replica_mean(f"{name}_seen", (), 0.0)
        owner._ranges = [*getattr(owner, "_ranges", []), self.min, self.max, self.seen]

    def __call__(self, x: Any, training: Any) -> Any:
        if training:
            low = ops.minimum(ops.min(x), 0.0)
            high = ops.maximum(ops.max(x), 0.0)
            first = self.seen.value < 0.5
            self.min.assign(ops.where(first, low, EMA_DECAY * self.min + (1 - EMA_DECAY) * low))
            self.max.assign(ops.where(first, high, EMA_DECAY * self.max + (1 - EMA_DECAY) * high))
            self.seen.assign(1.0)
        return tf.quantization.fake_quant_with_min_max_vars(
            x, self.min.value, self.max.value, num_bits=8, narrow_range=False
        )


@keras.saving.register_keras_serializable(package="keras_opt")
class QuantizeOutput(CompressionWrapper):
    """Runs a layer, then fake-quantizes its output per tensor (moving-average range).

    Args:
        layer: A Keras 3 layer without a kernel (Add, pooling, ReLU, Identity...).
        quantize_output: Boolean. False for Softmax-like outputs whose range
            TFLite fixes itself, and for an output that only feeds a ReLU (the
            range is taken after it).
        **kwargs: Layer arguments.

    Returns:
        A Keras layer.

    Example:
        >>> from keras_opt.optimization._native.quantization import QuantizeOutput
        >>> from keras_opt.backend import keras
        >>> QuantizeOutput(keras.layers.Add()).compression_kind
        'quantize'
    """

    compression_kind = "quantize"

    def __init__(self, layer: Any, quantize_output: bool = True, **kwargs: Any) -> None:
        super().__init__(layer, **kwargs)
        self.quantize_output = bool(quantize_output)

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        self.output_range = _Range(self, "output") if self.quantize_output else None
        self.built = True

    def call(self, inputs: Any, training: Any = None) -> Any:
        outputs = self.layer(inputs)
        if self.output_range is not None:
            outputs = self.output_range(outputs, training)
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(quantize_output=self.quantize_output)
        return config


@keras.saving.register_keras_serializable(package="keras_opt")
class QuantizeKernel(CompressionWrapper):
    """Fake-quantizes a layer's kernel (8-bit, symmetric) and its output.

    Made by `keras_opt.optimization.quantize` under Keras 3. The wrapped layer
    runs with a linear activation; the wrapper applies ``activation`` and puts
    the output quantizer after it (ReLU/ReLU6, fused by the converter) or
    before it (softmax, sigmoid, tanh).

    Args:
        layer: A built Conv1D, Conv2D, DepthwiseConv2D or Dense layer with a
            linear activation.
        activation: String. The activation the original layer (or a following
            ReLU layer) applied.
        preserve: None, ``"sparsity"``, ``"clusters"`` or ``"both"``: keep the
            kernel's zeros and/or its shared values per output channel.
        clusters: Integer. With ``preserve`` clusters: the number of shared values.
        shared: Boolean. With ``preserve`` clusters: one set of values for the
            whole kernel (it was clustered per kernel), else one per output
            channel (per-channel clustering). A folded BatchNormalization's
            per-channel scale multiplies the shared values, so the int8 file
            (per-channel scales) keeps one grid of N values for the kernel.
        **kwargs: Layer arguments.

    Returns:
        A Keras layer.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> kopt.quantize(model).get_layer("head")  # doctest: +SKIP
        <QuantizeKernel name=head, built=True>
    """

    compression_kind = "quantize"

    def __init__(
        self,
        layer: Any,
        activation: str = "linear",
        preserve: str | None = None,
        clusters: int = 0,
        shared: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(layer, **kwargs)
        self.activation = activation
        self.preserve = preserve
        self.clusters = int(clusters)
        self.shared = bool(shared)
        self._dense_as_conv = False  # set in build()

    # Kernel layout: per-channel fake quant works on the last axis.
    def _channels_last(self, w: Any) -> Any:
        if self._dense_as_conv:  # (1, 1, in, out): the CONV_2D kernel, quantized as such
            return ops.reshape(w, (1, 1, *tuple(w.shape)))
        if isinstance(self.layer, keras.layers.DepthwiseConv2D):
            shape = tuple(w.shape)
            return ops.reshape(w, (*shape[:-2], shape[-2] * shape[-1]))
        return w

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        self.kernel_variable = kernels.kernel_variables(self.layer)["kernel"]
        shape = tuple(self.kernel_variable.shape)
        channels = int(np.prod(shape[-2:])) if self._is_depthwise else int(shape[-1])
        # A Dense layer is quantized per channel when it can run as a 1x1 convolution (see the
        # module docstring); on inputs with unknown inner dimensions, per tensor.
        self._dense_as_conv = isinstance(self.layer, keras.layers.Dense) and _static_inner(
            input_shape
        )
        ranges = () if self._per_tensor else (channels,)
        self.kernel_min = _replica_mean("kernel_min", ranges, -1.0)
        self.kernel_max = _replica_mean("kernel_max", ranges, 1.0)
        if self.preserve in ("sparsity", "both"):
            self.sparsity_mask = keras.Variable(
                np.ones(shape, "float32"), trainable=False, name="sparsity_mask"
            )
        if self.preserve in ("clusters", "both"):
            self.centroids = self.add_weight(
                name="centroids",
                shape=(1 if self.shared else channels, self.clusters),
                initializer="zeros",
            )
            self.cluster_indices = keras.Variable(
                np.zeros(self._channels_last_shape(shape), "int32"),
                trainable=False,
                name="cluster_indices",
            )
            self.channel_scale = keras.Variable(
                np.ones((channels,), "float32"), trainable=False, name="channel_scale"
            )
        self.output_range = (
            _Range(self, "output") if self.activation not in PRE_QUANT_ACTIVATIONS else None
        )
        self.pre_activation_range = (
            _Range(self, "pre_activation") if self.activation in PRE_QUANT_ACTIVATIONS else None
        )
        self.built = True

    @property
    def _per_tensor(self) -> bool:
        return isinstance(self.layer, keras.layers.Dense) and not self._dense_as_conv

    @property
    def _is_depthwise(self) -> bool:
        return isinstance(self.layer, keras.layers.DepthwiseConv2D)

    def _channels_last_shape(self, shape: tuple) -> tuple:
        return (*shape[:-2], shape[-2] * shape[-1]) if self._is_depthwise else shape

    def initialize_preserved(
        self, source: np.ndarray | None = None, channel_scale: np.ndarray | None = None
    ) -> None:
        """Record the kernel's zeros and shared values (from a pruned/clustered model).

        Args:
            source: The kernel before a BatchNormalization was folded into it
                (None: the wrapped layer's kernel).
            channel_scale: The folded BatchNormalization's scale per output
                channel (None: ones).
        """
        kernel = ops.convert_to_numpy(self.kernel_variable.value)
        if self.preserve in ("sparsity", "both"):
            self.sparsity_mask.assign((kernel != 0).astype("float32"))
        if self.preserve not in ("clusters", "both"):
            return
        source = kernel if source is None else np.asarray(source)
        rows = np.asarray(ops.convert_to_numpy(self._channels_last(source)))
        rows = rows.reshape(-1, rows.shape[-1]).T  # (channels, weights per channel)
        groups = [rows.ravel()] if self.shared else list(rows)
        centroids = np.zeros((len(groups), self.clusters), "float32")
        for g, values in enumerate(np.unique(group) for group in groups):
            if values.size > self.clusters:
                raise ValueError(
                    f"Layer {self.layer.name!r} has {values.size} distinct kernel values "
                    f"{'in its kernel' if self.shared else f'in output channel {g}'}, more "
                    f"than the {self.clusters} clusters to preserve: cluster and strip the "
                    "model before quantizing it with preserve='clusters'."
                )
            centroids[g, : values.size] = values
            centroids[g, values.size :] = values[-1]
        indices = np.stack(
            [np.searchsorted(centroids[0 if self.shared else c], row) for c, row in enumerate(rows)]
        )
        self.centroids.assign(centroids)
        self.cluster_indices.assign(indices.T.reshape(self.cluster_indices.shape).astype("int32"))
        if channel_scale is not None:
            self.channel_scale.assign(np.asarray(channel_scale, "float32").ravel())

    def effective_kernel(self) -> Any:
        """The float kernel before fake quantization (zeros and shared values kept)."""
        kernel = tf.convert_to_tensor(self.kernel_variable.value)
        if self.preserve in ("clusters", "both"):
            channels = int(self.channel_scale.shape[0])
            flat = ops.reshape(self.cluster_indices.value, (-1, channels))  # (weights, channels)
            table = ops.transpose(self.centroids.value)  # (clusters, 1 or channels)
            if self.shared:
                values = ops.take(table[:, 0], flat)
            else:
                values = ops.take_along_axis(table, flat, axis=0)
            values = values * self.channel_scale.value
            clustered = ops.reshape(values, tuple(self.kernel_variable.shape))
            kernel = clustered + (kernel - ops.stop_gradient(kernel))
        if self.preserve in ("sparsity", "both"):
            kernel = kernel * self.sparsity_mask.value
        return kernel

    def call(self, inputs: Any, training: Any = None) -> Any:
        kernel = self.effective_kernel()
        rows = self._channels_last(kernel)
        if training:
            axes = None if self._per_tensor else tuple(range(len(rows.shape) - 1))
            if self.preserve in ("clusters", "both") and self.shared and not self._per_tensor:
                # One grid for the whole kernel: each channel's range is the shared values'
                # range times its folded scale, so every channel's int8 values are the same N.
                shared_max = ops.max(ops.abs(ops.stop_gradient(self.centroids.value)))
                bound = shared_max * ops.abs(self.channel_scale.value)
            else:
                bound = ops.max(ops.abs(ops.stop_gradient(rows)), axis=axes)
            bound = ops.maximum(bound, 1e-8)
            self.kernel_min.assign(-bound)
            self.kernel_max.assign(bound)
        fake_quant = (
            tf.quantization.fake_quant_with_min_max_vars
            if self._per_tensor
            else tf.quantization.fake_quant_with_min_max_vars_per_channel
        )
        quantized = fake_quant(
            rows, self.kernel_min.value, self.kernel_max.value, num_bits=8, narrow_range=True
        )
        if self._dense_as_conv:
            outputs = self._dense_as_1x1_conv(inputs, quantized)
        else:
            quantized = ops.reshape(quantized, tuple(self.kernel_variable.shape))
            with kernels.substitute([(self.kernel_variable, quantized)]):
                outputs = self.layer(inputs)
        if self.pre_activation_range is not None:
            outputs = self.pre_activation_range(outputs, training)
        outputs = keras.activations.get(self.activation)(outputs)
        if self.output_range is not None:
            outputs = self.output_range(outputs, training)
        return outputs

    def _dense_as_1x1_conv(self, inputs: Any, kernel: Any) -> Any:
        """The wrapped Dense layer (linear) as a 1x1 convolution with the fake-quant kernel.

        ``kernel`` is fake-quantized per channel in the ``(1, 1, in, out)`` shape a
        ``CONV_2D`` takes: a reshape of the quantized tensor would make the converter
        move its quantized axis, which TF 2.21 rejects.
        """
        units = int(kernel.shape[-1])
        inner = tuple(int(d) for d in inputs.shape[1:-1])
        features = int(inputs.shape[-1])
        x = tf.reshape(tf.cast(inputs, self.compute_dtype), (-1, 1, 1, features))
        outputs = tf.nn.conv2d(x, tf.cast(kernel, self.compute_dtype), strides=1, padding="VALID")
        if self.layer.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.cast(self.layer.bias, self.compute_dtype))
        return tf.reshape(outputs, (-1, *inner, units))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            activation=self.activation,
            preserve=self.preserve,
            clusters=self.clusters,
            shared=self.shared,
        )
        return config

    def compressed_values(self) -> dict[str, Any]:
        """``{"kernel": numpy}``: the float kernel `strip` writes into the plain layer."""
        return {"kernel": ops.convert_to_numpy(self.effective_kernel())}
