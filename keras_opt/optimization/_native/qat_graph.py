"""Turn a Keras 3 graph model into its quantization-aware twin (the native `quantize`).

The graph is read once (who feeds whom), then rebuilt with every layer
replaced by what the TFLite converter needs to make it int8:

* Conv1D/Conv2D/DepthwiseConv2D/Dense -> `QuantizeKernel`; a BatchNormalization
  that only follows it is folded into its kernel and bias, and a ReLU/ReLU6
  that only follows it is fused into it (the converter fuses it too).
* Add, Concatenate, global average pooling, activations ... -> `QuantizeOutput`.
* Max and average pooling, Flatten, Reshape, Dropout ... keep their input's
  range (TFLite's int8 kernels for them do too): copied.
* Every model input gets a `QuantizeOutput` (the converter's QUANTIZE op).
* Layers without an int8 kernel in TFLite are reported by `diagnose`; with
  ``skip_unsupported`` they stay in float.

Nested models are inlined first, so fusions cross their boundaries.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_opt.backend import keras
from keras_opt.optimization import _graph

_L = keras.layers
KERNEL_LAYERS = (_L.Conv1D, _L.Conv2D, _L.DepthwiseConv2D, _L.Dense)
PASSTHROUGH = (
    _L.MaxPooling1D,
    _L.MaxPooling2D,
    _L.AveragePooling1D,  # TFLite's int8 AVERAGE_POOL_2D keeps its input's scale
    _L.AveragePooling2D,
    _L.GlobalMaxPooling1D,
    _L.GlobalMaxPooling2D,
    _L.Flatten,
    _L.Reshape,
    _L.Dropout,
    _L.SpatialDropout1D,
    _L.SpatialDropout2D,
    _L.GaussianNoise,
    _L.Identity,
    _L.ZeroPadding1D,
    _L.ZeroPadding2D,
    _L.Cropping1D,
    _L.Cropping2D,
    _L.Permute,
)
OUTPUT_LAYERS = (
    _L.Add,
    _L.Subtract,
    _L.Multiply,
    _L.Average,
    _L.Maximum,
    _L.Minimum,
    _L.Concatenate,
    _L.GlobalAveragePooling1D,
    _L.GlobalAveragePooling2D,
    _L.UpSampling1D,
    _L.UpSampling2D,
    _L.ReLU,
    _L.Activation,
    _L.Softmax,
    _L.BatchNormalization,
)
FUSABLE = ("relu", "relu6")


_SKIP_FIX = "or pass skip_unsupported=True to keep it in float."


def diagnose(layer: Any) -> Any:
    """None when native QAT handles ``layer``, else an `UnsupportedLayer` saying why not."""
    from keras_opt.optimization.quantization import UnsupportedLayer

    if not isinstance(layer, _L.Layer):  # a keras.ops call in the graph (x * 0.5 ...)
        return UnsupportedLayer(
            layer.name,
            type(layer).__name__,
            "a raw keras.ops operation has no quantization recipe.",
            "Replace it with a Keras layer (e.g. keras.layers.Multiply, Add, Rescaling), "
            + _SKIP_FIX,
        )
    if isinstance(layer, (_L.InputLayer, *KERNEL_LAYERS, *PASSTHROUGH, *OUTPUT_LAYERS)):
        if isinstance(layer, _L.Conv2D | _L.Conv1D) and getattr(layer, "groups", 1) != 1:
            return UnsupportedLayer(
                layer.name,
                type(layer).__name__,
                "grouped convolutions have no int8 kernel in TFLite.",
                "Use groups=1 or a DepthwiseConv2D, " + _SKIP_FIX,
            )
        else:
            return None
    kind = type(layer).__name__
    if isinstance(layer, (_L.SeparableConv1D, _L.SeparableConv2D)):
        fix = "Write it as DepthwiseConv2D + Conv2D(1x1) (what TFLite runs), " + _SKIP_FIX
        reason = "it has two kernels and an inner activation that QAT would both have to quantize."
    elif isinstance(layer, (_L.LSTM, _L.GRU, _L.SimpleRNN, _L.Bidirectional, _L.RNN)):
        reason = "recurrent layers have no int8 kernel that QAT can target in TFLite."
        fix = "Keep it in float with skip=[...], " + _SKIP_FIX
    elif isinstance(layer, (_L.Rescaling, _L.Normalization, _L.Resizing, _L.CenterCrop)):
        reason = "preprocessing layers are not part of the int8 graph."
        fix = "Move the preprocessing into the input pipeline (tf.data), " + _SKIP_FIX
    elif isinstance(layer, _L.Lambda):
        reason = "a Lambda has no quantization recipe."
        fix = "Replace it with a Keras layer (e.g. Multiply, Add, Rescaling), " + _SKIP_FIX
    else:
        reason = "keras_opt has no int8 QAT recipe for this layer type."
        fix = "Keep it in float with skip=[...], " + _SKIP_FIX
    return UnsupportedLayer(layer.name, kind, reason, fix)


def inline_nested(model: Any) -> Any:
    """A Functional model with nested models inlined (the same layer objects)."""
    inputs = [
        keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=_input_name(t))
        for t in model.inputs
    ]

    def functional(m: Any) -> Any:
        return m._functional if isinstance(m, keras.Sequential) else m

    def operation_fn(op: Any) -> Any:
        if _graph.is_graph_model(op):
            inner = functional(op)

            def run(*args: Any, **kwargs: Any) -> Any:
                return inner._run_through_graph(args[0], operation_fn=operation_fn)

            return run
        return op

    outputs = keras.tree.flatten(
        functional(model)._run_through_graph(inputs, operation_fn=operation_fn)
    )
    return keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=model.name,
    )


def _consumers(model: Any) -> tuple[dict[int, list], dict[int, list]]:
    consumers: dict[int, list] = {}
    producers: dict[int, list] = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.is_input or node.operation is None:
                continue
            for parent in node.parent_nodes:
                consumers.setdefault(id(parent.operation), []).append(node.operation)
                producers.setdefault(id(node.operation), []).append(parent.operation)
    return consumers, producers


def _activation_of(layer: Any) -> str | None:
    """The activation a layer applies, when it is a standalone activation layer."""
    if isinstance(layer, _L.ReLU):
        plain = not layer.negative_slope and not layer.threshold
        if plain and layer.max_value is None:
            return "relu"
        if plain and layer.max_value is not None and float(layer.max_value) == 6.0:
            return "relu6"
        return None
    if isinstance(layer, _L.Activation):
        return getattr(layer.activation, "__name__", None)
    return None


def _fold_bn(conv: Any, bn: Any) -> tuple[Any, np.ndarray]:
    """A copy of ``conv`` with ``bn`` (inference statistics) folded into kernel and bias,
    and the per-channel scale that multiplied the kernel."""
    kernel = np.asarray(conv.kernel.numpy())
    bias = np.asarray(conv.bias.numpy()) if conv.use_bias else 0.0
    gamma = np.asarray(bn.gamma.numpy()) if bn.scale else 1.0
    beta = np.asarray(bn.beta.numpy()) if bn.center else 0.0
    scale = gamma / np.sqrt(np.asarray(bn.moving_variance.numpy()) + bn.epsilon)
    shift = beta - np.asarray(bn.moving_mean.numpy()) * scale
    if isinstance(conv, _L.DepthwiseConv2D):
        kernel = kernel * np.reshape(scale, kernel.shape[-2:])
    else:
        kernel = kernel * scale
    config = conv.get_config()
    config["use_bias"] = True
    new = type(conv).from_config(config)
    new.build_from_config(conv.get_build_config())
    new.set_weights([kernel.astype("float32"), (bias * scale + shift).astype("float32")])
    return new, np.asarray(scale, "float32")


def _builtin_activation(layer: Any) -> str | None:
    """The name of ``layer``'s activation when it is a built-in one, else None."""
    value = layer.get_config().get("activation", "linear")
    return "linear" if value is None else value if isinstance(value, str) else None


def _linear_copy(layer: Any) -> tuple[Any, str]:
    """A copy of a kernel layer with a linear activation, and the activation it had.

    A custom activation stays in the copy (and the output is quantized after it).
    """
    config = layer.get_config()
    activation = _builtin_activation(layer)
    if activation is not None:
        config["activation"] = "linear"
    new = type(layer).from_config(config)
    new.build_from_config(layer.get_build_config())
    new.set_weights(layer.get_weights())
    return new, activation or "linear"


def _cluster_layout(kernel: np.ndarray, depthwise: bool) -> tuple[int, bool]:
    """(values to preserve, shared by the whole kernel?) of a clustered kernel."""
    overall = int(np.unique(kernel).size)
    if overall <= MAX_PRESERVED_CLUSTERS:
        return overall, True
    rows = kernel.reshape(*kernel.shape[:-2], -1) if depthwise else kernel
    rows = rows.reshape(-1, rows.shape[-1]).T
    return int(max(np.unique(row).size for row in rows)), False


MAX_PRESERVED_CLUSTERS = 64
"""More distinct values per output channel than this: the kernel was not clustered."""


def _input_name(tensor: Any) -> str:
    return str(tensor._keras_history[0].name)


def build_qat_model(model: Any, chosen: set[str], preserve: str | None) -> Any:
    """The quantization-aware copy of ``model`` (see the module docstring).

    Args:
        model: A Keras 3 graph model.
        chosen: Names of the layers to quantize (the others stay float).
        preserve: None, ``"sparsity"``, ``"clusters"`` or ``"both"``.

    Returns:
        A new Functional model.

    Raises:
        ValueError: when ``preserve`` asks to keep clusters of a kernel that was
            not clustered (the stage order cannot be preserved).
    """
    from keras_opt.optimization._native.quantization import (
        PRE_QUANT_ACTIVATIONS,
        QuantizeKernel,
        QuantizeOutput,
    )

    flat = inline_nested(model)
    consumers, producers = _consumers(flat)
    replace: dict[int, Any] = {}
    absorbed: set[int] = set()

    def only_consumer(layer: Any) -> Any:
        users = consumers.get(id(layer), [])
        return users[0] if len(users) == 1 else None

    def absorb_activation(layer: Any) -> str | None:
        user = only_consumer(layer)
        if user is not None and user.name in chosen and _activation_of(user) in FUSABLE:
            absorbed.add(id(user))
            return _activation_of(user)
        return None

    for layer in flat.operations:
        if id(layer) in absorbed or isinstance(layer, _L.InputLayer):
            continue
        if not isinstance(layer, _L.Layer):  # a keras.ops call: reused as it is
            replace[id(layer)] = layer
            continue
        if layer.name not in chosen:
            replace[id(layer)] = _graph.copy_layer(layer)
            continue
        if isinstance(layer, KERNEL_LAYERS):
            base, scale = layer, None
            user = only_consumer(layer)
            if (
                _builtin_activation(layer) == "linear"
                and isinstance(user, _L.BatchNormalization)
                and user.name in chosen
                and len(producers.get(id(user), [])) == 1
                and user.axis in (-1, len(user.input.shape) - 1)
            ):
                base, scale = _fold_bn(layer, user)
                absorbed.add(id(user))
                tail = user
            else:
                tail = layer
            inner, activation = _linear_copy(base)
            if activation == "linear":
                activation = absorb_activation(tail) or "linear"
            clusters, shared = 0, True
            source = np.asarray(layer.kernel.numpy())
            if preserve in ("clusters", "both"):
                depthwise = isinstance(layer, _L.DepthwiseConv2D)
                clusters, shared = _cluster_layout(source, depthwise)
                if clusters > MAX_PRESERVED_CLUSTERS:
                    raise ValueError(
                        f"Layer {layer.name!r} has {clusters} distinct kernel values per output "
                        f"channel: it was not clustered, so preserve={preserve!r} has no "
                        "clusters to keep. Cluster (and strip) the model before quantizing it, "
                        "or pass preserve='sparsity' or None."
                    )
            wrapper = QuantizeKernel(
                inner, activation=activation, preserve=preserve, clusters=clusters, shared=shared
            )
            wrapper.build(layer.get_build_config()["input_shape"])
            if preserve is not None:
                wrapper.initialize_preserved(source, scale)
            replace[id(layer)] = wrapper
        elif isinstance(layer, OUTPUT_LAYERS):
            own = _activation_of(layer)
            if own in PRE_QUANT_ACTIVATIONS or isinstance(layer, _L.Softmax):
                replace[id(layer)] = QuantizeOutput(_graph.copy_layer(layer), quantize_output=False)
                continue
            # Followed only by ReLU/ReLU6: the range is taken after it (the converter fuses it).
            user = only_consumer(layer)
            fused_next = own is None and user is not None and _activation_of(user) in FUSABLE
            replace[id(layer)] = QuantizeOutput(
                _graph.copy_layer(layer), quantize_output=not fused_next
            )
        else:  # pass-through layers keep their input's range
            replace[id(layer)] = _graph.copy_layer(layer)

    inputs = [
        keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=_input_name(t))
        for t in flat.inputs
    ]
    quantized_inputs = [
        QuantizeOutput(keras.layers.Identity(name=f"{_input_name(t)}_quantize"))(t)
        if "float" in str(t.dtype)
        else t
        for t in inputs
    ]

    def operation_fn(op: Any) -> Any:
        if id(op) in absorbed:
            return lambda *args, **kwargs: args[0]
        return replace[id(op)]

    outputs = keras.tree.flatten(
        flat._run_through_graph(quantized_inputs, operation_fn=operation_fn)
    )
    return keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs if len(outputs) > 1 else outputs[0],
        name=model.name,
    )
