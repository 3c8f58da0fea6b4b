"""Open a ``.tflite`` file with the LiteRT interpreter (XNNPACK first, then plain)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["read_tflite", "open_interpreter", "signature_inputs"]

_MAGIC = b"TFL3"


def read_tflite(path: str | os.PathLike, argument: str = "path") -> bytes:
    """Return the bytes of a TFLite flatbuffer, or raise a clear ValueError.

    Raises:
        ValueError: if the file is missing, empty, or not a TFLite flatbuffer.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(
            f"Argument `{argument}` must be an existing .tflite file. Received: "
            f"{argument}={path!r} (no such file)"
        )
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[4:8] != _MAGIC:
        raise ValueError(
            f"Argument `{argument}` must be a TFLite (LiteRT) flatbuffer, but {path!r} is not "
            f"one (its file identifier is {data[4:8]!r}, expected {_MAGIC!r}; the file is "
            f"{len(data)} bytes). Export it with `keras_opt.tflite.export` or "
            f"`keras-opt convert`."
        )
    return data


def open_interpreter(
    content: bytes, threads: int, use_xnnpack: bool = True
) -> tuple[Any, str, float]:
    """Create and allocate an interpreter.

    Returns:
        Tuple ``(interpreter, delegate, init_ms)``. ``delegate`` is
        ``"xnnpack"``, ``"none"``, or ``"none (xnnpack failed: ...)"`` when the
        default delegate could not be applied and the plain kernels were used.

    Raises:
        ValueError: if LiteRT cannot load the model at all.
    """
    import time

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def make(resolver: Any) -> Any:
        interp = Interpreter(
            model_content=content,
            num_threads=threads,
            experimental_op_resolver_type=resolver,
        )
        interp.allocate_tensors()
        return interp

    t0 = time.perf_counter()
    if use_xnnpack:
        try:
            interp = make(OpResolverType.AUTO)
            return interp, "xnnpack", (time.perf_counter() - t0) * 1000
        except (RuntimeError, ValueError) as err:
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else "error"
            delegate = f"none (xnnpack failed: {reason})"
    else:
        delegate = "none"
    t0 = time.perf_counter()
    try:
        interp = make(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"LiteRT could not load the model: {str(err).strip()[:500]}. If it uses TensorFlow "
            f"(Flex) ops, run it with a runtime that links the Flex delegate."
        ) from None
    return interp, delegate, (time.perf_counter() - t0) * 1000


def signature_inputs(input_details: dict[str, Any], input_names: Any) -> tuple[dict[str, str], int]:
    """Map Keras input names to a signature runner's inputs, and read the file's batch.

    Args:
        input_details: ``runner.get_input_details()`` of a signature runner.
        input_names: The Keras model's input names, in order.

    Returns:
        ``(mapping, fixed_batch)``: Keras name -> signature input name (by name when
        the sets match, else by position: unnamed or renamed inputs), and the batch
        axis of the first input (-1 when it is dynamic or the input is a scalar).
    """
    signature_names = list(input_details)
    names = list(input_names)
    if set(signature_names) == set(names):
        mapping = dict(zip(names, names, strict=True))
    else:
        mapping = dict(zip(names, signature_names, strict=False))
    first = input_details[signature_names[0]]
    shape = first.get("shape_signature", first["shape"])
    fixed = int(shape[0]) if len(shape) and int(shape[0]) > 0 else -1
    return mapping, fixed
