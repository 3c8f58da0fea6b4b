"""What is inside a ``.tflite`` file: ops, tensor types, quantization, I/O details.

Reads the flatbuffer with the schema that ships with ai-edge-litert.

Example:
    >>> from keras_opt.tflite._inspection import inspect_tflite
    >>> info = inspect_tflite("model.tflite")  # doctest: +SKIP
    >>> info["builtin_only"], info["dequantize_count"]  # doctest: +SKIP
    (True, 0)
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from keras_opt.tflite._runtime import read_tflite

__all__ = ["inspect_tflite", "io_details", "variable_tensor_count"]


def _names(cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def inspect_tflite(model: bytes | str | os.PathLike) -> dict[str, Any]:
    """Summarize the ops and tensors of a TFLite flatbuffer.

    Args:
        model: Path of a ``.tflite`` file, or its bytes.

    Returns:
        Dict with ``used`` (op name -> count, Flex and custom ops by their
        custom code), ``builtin_only``, ``needs_flex_delegate``,
        ``custom_ops``, ``tensor_types`` (type -> count), ``int8_tensors``,
        ``dequantize_count``, ``quantize_count``, ``weight_bytes`` (bytes
        of constant buffers) and ``input_shapes`` (``name`` and ``shape`` of
        each input of the main graph, -1 for a dynamic axis) and
        ``variable_tensors`` (state kept between invocations, e.g. by a fused
        LSTM: an app must reset it before each run) and ``kernel_types`` (tensor type
        -> count of the kernels of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ...,
        read through a DEQUANTIZE: ``{"INT4": 3}`` for an int4 weight-only file).

    Raises:
        ValueError: for a missing, truncated or corrupt file, or bytes that are
            not a TFLite flatbuffer (the message names the file and the fix).
        TypeError: if ``model`` is neither a path nor bytes.

    Example:
        >>> from keras_opt.tflite import inspect_tflite  # doctest: +SKIP
        >>> info = inspect_tflite("int8.tflite")  # doctest: +SKIP
        >>> info["builtin_only"], info["dequantize_count"]  # doctest: +SKIP
        (True, 0)
    """
    if isinstance(model, (str, os.PathLike)):
        where = repr(os.fspath(model))
        content = read_tflite(model, argument="model")
    elif isinstance(model, (bytes, bytearray, memoryview)):
        where = "the given bytes"
        content = bytes(model)
        if len(content) < 8 or content[4:8] != b"TFL3":
            raise ValueError(
                f"Argument `model` must be a TFLite (LiteRT) flatbuffer, but {where} are not "
                f"one (file identifier {content[4:8]!r}, expected b'TFL3'; {len(content)} "
                "bytes). Pass the bytes of a .tflite file exported with "
                "`keras_opt.tflite.export` or `keras-opt convert`."
            )
    else:
        raise TypeError(
            "Argument `model` must be the path of a .tflite file or its bytes. Received: "
            f"model={type(model).__name__}"
        )
    try:
        return _inspect(content)
    except Exception as err:  # flatbuffers raises IndexError, struct.error, ...
        raise ValueError(
            f"{where} cannot be read as a TFLite flatbuffer: it is truncated or corrupt "
            f"({type(err).__name__}: {err}). Export the model again (keras_opt.tflite.export "
            "or keras-opt convert) or copy the file again."
        ) from None


def _inspect(content: bytes) -> dict[str, Any]:
    from ai_edge_litert import schema_py_generated as schema

    op_names = _names(schema.BuiltinOperator)
    type_names = _names(schema.TensorType)
    model = schema.Model.GetRootAs(content, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == schema.BuiltinOperator.CUSTOM:
            custom = oc.CustomCode()
            codes.append(custom.decode() if isinstance(custom, bytes) else str(custom))
        else:
            codes.append(op_names.get(code, f"BUILTIN_{code}"))
    used: Counter = Counter()
    types: Counter = Counter()
    kernels: Counter = Counter()
    int8_names: list[str] = []
    variables = 0
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        producer: dict[int, Any] = {}
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            used[codes[op.OpcodeIndex()]] += 1
            for i in range(op.OutputsLength()):
                producer[int(op.Outputs(i))] = op
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            if codes[op.OpcodeIndex()] not in _KERNEL_OPS or op.InputsLength() < 2:
                continue
            index = int(op.Inputs(1))
            source = producer.get(index)
            # Weight-only files store the kernel quantized and DEQUANTIZE it before the op.
            if source is not None and codes[source.OpcodeIndex()] == "DEQUANTIZE":
                index = int(source.Inputs(0))
            if index >= 0 and _is_constant(model, sg.Tensors(index)):
                kernels[type_names.get(sg.Tensors(index).Type(), "?")] += 1
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            variables += int(bool(tensor.IsVariable()))
            tname = type_names.get(tensor.Type(), str(tensor.Type()))
            types[tname] += 1
            if tname == "INT8":
                int8_names.append(_text(tensor.Name()))
    input_shapes = []
    if model.SubgraphsLength():
        main = model.Subgraphs(0)
        for i in range(main.InputsLength()):
            tensor = main.Tensors(main.Inputs(i))
            shape = (
                tensor.ShapeSignatureAsNumpy()
                if tensor.ShapeSignatureLength()
                else tensor.ShapeAsNumpy()
            )
            dims = [int(d) for d in shape] if not isinstance(shape, int) else []
            input_shapes.append({"name": _text(tensor.Name()), "shape": dims})
    builtin = set(op_names.values())
    custom_ops = sorted(op for op in used if op not in builtin)
    weight_bytes = 0
    for b in range(model.BuffersLength()):
        buf = model.Buffers(b)
        weight_bytes += int(buf.Size()) if buf.Size() else int(buf.DataLength())
    return {
        "used": dict(sorted(used.items())),
        "builtin_only": not custom_ops,
        "needs_flex_delegate": any(op.startswith("Flex") for op in custom_ops),
        "custom_ops": custom_ops,
        "tensor_types": dict(sorted(types.items())),
        "int8_tensors": len(int8_names),
        "int8_tensor_names": int8_names,
        "dequantize_count": used.get("DEQUANTIZE", 0),
        "quantize_count": used.get("QUANTIZE", 0),
        "weight_bytes": weight_bytes,
        "input_shapes": input_shapes,
        "variable_tensors": variables,
        "kernel_types": dict(sorted(kernels.items())),
    }


#: Ops whose second input is a weight kernel (stored as a constant or DEQUANTIZEd).
_KERNEL_OPS = frozenset(
    {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "CONV_3D",
        "BATCH_MATMUL",
        "EMBEDDING_LOOKUP",
    }
)


def _is_constant(model: Any, tensor: Any) -> bool:
    b = int(tensor.Buffer())
    if b <= 0 or b >= model.BuffersLength():
        return False
    buf = model.Buffers(b)
    return bool(buf.Size() or buf.DataLength())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _detail(d: dict) -> dict[str, Any]:
    scale, zero = d.get("quantization", (0.0, 0))
    return {
        "name": d["name"],
        "shape": [int(v) for v in d.get("shape_signature", d["shape"])],
        "dtype": np.dtype(d["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero),
    }


def io_details(interpreter: Any) -> dict[str, list[dict[str, Any]]]:
    """Input and output tensors of an interpreter with quantization scale and zero point.

    Args:
        interpreter: A LiteRT ``Interpreter``.

    Returns:
        Dict ``{"inputs": [...], "outputs": [...]}``; each item has ``name``,
        ``shape`` (-1 for a dynamic axis), ``dtype``, ``scale`` and
        ``zero_point`` (0.0 and 0 for float tensors).
    """
    return {
        "inputs": [_detail(d) for d in interpreter.get_input_details()],
        "outputs": [_detail(d) for d in interpreter.get_output_details()],
    }


def variable_tensor_count(content: bytes) -> int:
    """How many variable (stateful) tensors a TFLite flatbuffer has, in every subgraph.

    A tf_keras LSTM converts to a fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` whose hidden
    and cell states are variable tensors: they persist between ``invoke()`` calls, so
    an app must call ``reset_all_variables()`` (C++ ``ResetVariableTensors()``) before
    each independent input.

    Args:
        content: Bytes of the ``.tflite`` file.

    Returns:
        Integer >= 0.
    """
    return int(inspect_tflite(content)["variable_tensors"])
