"""Measure one written ``.tflite`` file: size, hash, ops, I/O details, latency, parity."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_opt.tflite._runtime import open_interpreter, read_tflite
from keras_opt.tflite.benchmark import benchmark
from keras_opt.tflite.data import InputSpec
from keras_opt.tflite.inspection import inspect_tflite, io_details
from keras_opt.tflite.parity import parity_metrics, run_tflite

__all__ = ["measure_artifact"]


def _sample_by_signature(
    specs: Sequence[InputSpec], sample: Sequence[np.ndarray], sig_names: Sequence[str]
) -> dict[str, np.ndarray]:
    keras_names = [s.name for s in specs]
    if set(keras_names) == set(sig_names):
        return {n: a[:1] for n, a in zip(keras_names, sample, strict=False)}
    return {n: a[:1] for n, a in zip(sig_names, sample, strict=False)}


def measure_artifact(
    name: str,
    path: str,
    specs: Sequence[InputSpec],
    output_names: Sequence[str] | None,
    eval_inputs: Sequence[np.ndarray] | None,
    y: np.ndarray | None,
    keras_outputs: Sequence[np.ndarray] | None,
    metric: str | Callable,
    threads: int,
    runs: int,
    warmup: int,
    sample: Sequence[np.ndarray] | None,
) -> dict[str, Any]:
    """Measure a written variant; return its manifest fields.

    Args:
        name: String. Variant name (for logs).
        path: String. The ``.tflite`` file.
        specs: The Keras model's `InputSpec` list.
        output_names: Keras output names, to order the TFLite outputs.
        eval_inputs: Eval arrays (one per input) or None (no parity then).
        y: Eval labels or None.
        keras_outputs: The Keras model's outputs on ``eval_inputs``.
        metric: ``"accuracy"`` or a callable.
        threads: Integer. Interpreter threads.
        runs: Integer. Timed runs.
        warmup: Integer. Warmup runs.
        sample: Arrays whose first sample feeds the latency runs, or None.

    Returns:
        Dict with ``file``, ``size_bytes``, ``gzip_bytes``, ``sha256``,
        ``ops``, ``input_shapes`` (read from the file, -1 for a dynamic axis),
        ``inputs``, ``outputs``, ``latency_ms``, ``latency``,
        ``threads``, ``delegate``, ``parity`` and ``metrics`` (or
        ``runtime_error`` when LiteRT cannot run the file).
    """
    content = read_tflite(path)
    entry: dict[str, Any] = {
        "file": os.path.basename(path),
        "size_bytes": len(content),
        "gzip_bytes": len(gzip.compress(content, compresslevel=9, mtime=0)),
        "sha256": hashlib.sha256(content).hexdigest(),
        "ops": inspect_tflite(content),
    }
    entry["ops"].pop("int8_tensor_names", None)
    entry["input_shapes"] = entry["ops"].pop("input_shapes", [])
    try:
        interp, _, _ = open_interpreter(content, threads)
        entry.update(io_details(interp))
        interp_inputs = list(interp.get_signature_runner().get_input_details().items())
        interp_inputs = [{"name": n} for n, _ in interp_inputs]
        del interp
        feed = None
        if sample is not None:
            sig_names = [d["name"] for d in interp_inputs]
            feed = _sample_by_signature(specs, sample, sig_names)
        lat = benchmark(path, threads=threads, runs=runs, warmup=warmup, inputs=feed)
        entry["latency_ms"] = lat.latency_ms
        entry["latency"] = lat.to_dict()
        entry["threads"] = threads
        entry["delegate"] = lat.delegate
        if eval_inputs is not None and keras_outputs is not None:
            outs = run_tflite(
                content,
                eval_inputs,
                input_names=[s.name for s in specs],
                output_names=output_names,
                threads=threads,
            )
            entry["parity"], entry["metrics"] = parity_metrics(keras_outputs, outs, y, metric)
    except ValueError as err:  # e.g. Flex ops the runtime cannot load
        entry["runtime_error"] = str(err)
    return entry
