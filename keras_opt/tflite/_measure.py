"""Measure one written ``.tflite`` file: size, hash, ops, I/O details, latency, parity."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_opt.tflite._benchmark import benchmark
from keras_opt.tflite._data import InputSpec
from keras_opt.tflite._inspection import inspect_tflite, io_details
from keras_opt.tflite._parity import parity_metrics, run_tflite
from keras_opt.tflite._runtime import open_interpreter, read_tflite

__all__ = ["MeasureSetup", "measure_artifact"]


def _sample_by_signature(
    specs: Sequence[InputSpec], sample: Sequence[np.ndarray], sig_names: Sequence[str]
) -> dict[str, np.ndarray]:
    keras_names = [s.name for s in specs]
    if set(keras_names) == set(sig_names):
        return {n: a[:1] for n, a in zip(keras_names, sample, strict=False)}
    return {n: a[:1] for n, a in zip(sig_names, sample, strict=False)}


@dataclasses.dataclass(frozen=True)
class MeasureSetup:
    """What every variant of one export is measured with (the same for all of them).

    Attributes:
        specs: The Keras model's `InputSpec` list.
        output_names: Keras output names, to order the TFLite outputs (or None).
        eval_inputs: Eval arrays (one per input) or None (no parity then).
        labels: Eval labels or None (no metric then).
        keras_outputs: The Keras model's outputs on ``eval_inputs`` (or None).
        metric: ``"accuracy"`` or a callable ``metric(y_true, y_pred) -> float``.
        threads: Integer. Interpreter threads.
        runs: Integer. Timed runs.
        warmup: Integer. Warmup runs.
        sample: Arrays whose first sample feeds the latency runs, or None (random).
    """

    specs: Sequence[InputSpec]
    output_names: Sequence[str] | None = None
    eval_inputs: Sequence[np.ndarray] | None = None
    labels: np.ndarray | None = None
    keras_outputs: Sequence[np.ndarray] | None = None
    metric: str | Callable = "accuracy"
    threads: int = 1
    runs: int = 50
    warmup: int = 5
    sample: Sequence[np.ndarray] | None = None


def measure_artifact(path: str, setup: MeasureSetup) -> dict[str, Any]:
    """Measure a written variant; return its manifest fields.

    Args:
        path: String. The ``.tflite`` file.
        setup: `MeasureSetup`. The export's data, metric and latency protocol.

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
        interp, _, _ = open_interpreter(content, setup.threads)
        entry.update(io_details(interp))
        interp_inputs = list(interp.get_signature_runner().get_input_details().items())
        interp_inputs = [{"name": n} for n, _ in interp_inputs]
        del interp
        feed = None
        if setup.sample is not None:
            sig_names = [d["name"] for d in interp_inputs]
            feed = _sample_by_signature(setup.specs, setup.sample, sig_names)
        lat = benchmark(
            path, threads=setup.threads, runs=setup.runs, warmup=setup.warmup, inputs=feed
        )
        entry["latency_ms"] = lat.latency_ms
        entry["latency"] = lat.to_dict()
        entry["threads"] = setup.threads
        entry["delegate"] = lat.delegate
        if setup.eval_inputs is not None and setup.keras_outputs is not None:
            outs = run_tflite(
                content,
                setup.eval_inputs,
                input_names=[s.name for s in setup.specs],
                output_names=setup.output_names,
                threads=setup.threads,
            )
            entry["parity"], entry["metrics"] = parity_metrics(
                setup.keras_outputs, outs, setup.labels, setup.metric
            )
    except ValueError as err:  # e.g. Flex ops the runtime cannot load
        entry["runtime_error"] = str(err)
    return entry
