"""Latency of a ``.tflite`` file, measured with the LiteRT interpreter.

The protocol is ``litert-benchmark``'s (installed by ai-edge-litert), so that the
two agree on the same file: create the interpreter (init time), fill the inputs
(by default with the tool's data: uniform in [-1, 1) for floats, integers in
[-128, 127]), run ``warmup`` untimed runs (the first one is reported as the first
inference), then ``runs`` timed ``invoke()`` calls giving mean, std, p50 (the
median), p90 and p99, on ``threads`` interpreter threads. XNNPACK is on by
default, as in the tool; if it cannot be applied the plain kernels are used and
the fallback is recorded in ``delegate``.

Example:
    >>> from keras_opt.tflite import benchmark
    >>> r = benchmark("tflite_models/digits/int8.tflite", threads=1, runs=50)  # doctest: +SKIP
    >>> r.latency_ms["p50"]  # doctest: +SKIP
    0.031
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_opt import _validation as V
from keras_opt.tflite._runtime import open_interpreter, read_tflite

__all__ = ["benchmark", "LatencyResult"]


@dataclasses.dataclass
class LatencyResult:
    """What `benchmark` measured.

    Attributes:
        latency_ms: Dict with ``mean``, ``std``, ``p50``, ``p90``, ``p99`` (ms).
        init_ms: Float. Interpreter creation and tensor allocation.
        first_ms: Float. The first inference (the first warmup run, or the
            first timed run when ``warmup`` is 0).
        warmup_ms: Float. Mean of the warmup runs (0 when there are none).
        runs: Integer. Timed runs.
        warmup: Integer. Warmup runs.
        threads: Integer. Interpreter thread count.
        delegate: String. ``"xnnpack"``, ``"none"`` or the recorded fallback.
        samples_ms: List of floats. Every timed run.
        input_data: String. What the inputs held: ``"random uniform(-1, 1), seed N"``
            (litert-benchmark's data) or ``"given"``.

    Example:
        >>> from keras_opt.tflite import benchmark  # doctest: +SKIP
        >>> benchmark("int8.tflite", runs=20).to_dict()["latency_ms"]["p50"]  # doctest: +SKIP
        0.05
    """

    latency_ms: dict[str, float]
    init_ms: float
    first_ms: float
    warmup_ms: float
    runs: int
    warmup: int
    threads: int
    delegate: str
    samples_ms: list[float] = dataclasses.field(repr=False, default_factory=list)
    input_data: str = "random uniform(-1, 1)"

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data (without the raw samples)."""
        d = dataclasses.asdict(self)
        d.pop("samples_ms")
        return d


def _by_tensor_index(
    interp: Any, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]
) -> dict[int, np.ndarray]:
    """Map user inputs (by signature input name, or in signature order) to tensor indices."""
    try:
        sig = interp.get_signature_runner().get_input_details()
        names, indices = list(sig), [d["index"] for d in sig.values()]
    except (ValueError, KeyError):  # no signature: model input order
        indices = [d["index"] for d in interp.get_input_details()]
        names = [str(i) for i in range(len(indices))]
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(
                f"Argument `inputs` must have a key per model input ({', '.join(names)}). "
                f"Missing: {', '.join(missing)}"
            )
        return {i: np.asarray(inputs[n]) for n, i in zip(names, indices, strict=False)}
    if len(inputs) != len(indices):
        raise ValueError(
            f"Argument `inputs` must hold {len(indices)} arrays ({', '.join(names)}). "
            f"Received {len(inputs)}"
        )
    return {i: np.asarray(a) for i, a in zip(indices, inputs, strict=False)}


def _fill_inputs(
    interp: Any, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray] | None, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    given = _by_tensor_index(interp, inputs) if inputs is not None else {}
    for det in interp.get_input_details():
        dtype = np.dtype(det["dtype"])
        shape = tuple(int(d) for d in det["shape"])
        if inputs is not None:
            value = given[det["index"]]
            rows = shape[0] if shape else 1
            value = value[np.arange(rows) % len(value)] if value.ndim else value
            scale, zero = det["quantization"]
            if dtype.kind in "iu" and value.dtype.kind == "f" and scale:
                info = np.iinfo(dtype)
                value = np.clip(np.round(value / scale + zero), info.min, info.max)
            value = value.astype(dtype).reshape(shape)
        elif dtype.kind == "f":
            value = rng.uniform(-1.0, 1.0, shape).astype(dtype)
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            value = rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)
        else:
            value = np.zeros(shape, dtype)
        interp.set_tensor(det["index"], value)


def check_counts(threads: Any, runs: Any, warmup: Any) -> tuple[int, int, int]:
    """Validate the interpreter thread count and the timed/warmup run counts."""
    return (
        int(V.integer("threads", threads, minimum=1) or 0),
        int(V.integer("runs", runs, minimum=1) or 0),
        int(V.integer("warmup", warmup, minimum=0) or 0),
    )


def benchmark(
    path: str | os.PathLike,
    *,
    threads: int = 1,
    runs: int = 50,
    warmup: int = 5,
    use_xnnpack: bool = True,
    inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
) -> LatencyResult:
    """Measure the latency of a ``.tflite`` file with the LiteRT interpreter.

    Args:
        path: Path of the ``.tflite`` file.
        threads: Integer >= 1. Interpreter threads (recorded in the result).
        runs: Integer >= 1. Timed runs.
        warmup: Integer >= 0. Untimed runs before the timed ones (the first of them
            is the first inference), as ``litert-benchmark --warmup_runs``.
        use_xnnpack: Boolean. Apply the default XNNPACK delegate (with a
            recorded fallback to the plain kernels if it fails).
        inputs: Optional arrays, a dict keyed by signature input name or a
            list in signature order; the first sample (the first batch for a
            fixed batch > 1) is used. Default: random data, as
            ``litert-benchmark`` does.
        seed: Integer. Seed of the random input.

    Returns:
        `LatencyResult`.

    Raises:
        ValueError: for a missing, corrupt or non-TFLite file, or bad counts.
        TypeError: for non-integer counts.

    Example:
        >>> from keras_opt.tflite import benchmark
        >>> benchmark("model.tflite", threads=2, runs=20).latency_ms  # doctest: +SKIP
        {'mean': 0.05, 'std': 0.01, 'p50': 0.05, 'p90': 0.06, 'p99': 0.08}
    """
    threads, runs, warmup = check_counts(threads, runs, warmup)
    seed = int(V.integer("seed", seed, minimum=0) or 0)
    if not isinstance(use_xnnpack, bool):
        V.fail("use_xnnpack", "a boolean", use_xnnpack, exc=TypeError)
    content = read_tflite(path)
    try:
        interp, delegate, init_ms = open_interpreter(content, threads, use_xnnpack)
    except ValueError as err:
        raise ValueError(f"Cannot benchmark {os.fspath(path)!r}: {err}") from None
    _fill_inputs(interp, inputs, seed)
    warm = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        interp.invoke()
        warm.append((time.perf_counter() - t0) * 1000)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        samples.append((time.perf_counter() - t0) * 1000)
    arr = np.asarray(samples)
    latency = {
        "mean": float(arr.mean()),
        "std": float(statistics.stdev(samples)) if runs > 1 else 0.0,
        "p50": float(statistics.median(samples)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
    }
    return LatencyResult(
        latency_ms=latency,
        init_ms=init_ms,
        first_ms=(warm or samples)[0],
        warmup_ms=float(np.mean(warm)) if warm else 0.0,
        runs=runs,
        warmup=warmup,
        threads=threads,
        delegate=delegate,
        samples_ms=samples,
        input_data="given" if inputs is not None else f"random uniform(-1, 1), seed {seed}",
    )
