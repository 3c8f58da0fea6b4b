"""Open a ``.tflite`` file with the LiteRT interpreter (XNNPACK first, then plain)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["read_tflite", "open_interpreter"]

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
