"""`export`: a Keras model becomes a folder of measured ``.tflite`` variants.

Every number in the result is measured from the written file: size (raw and
gzipped) and sha256, LiteRT latency, parity with Keras on the eval data, ops
and quantization details.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import numpy as np

from keras_opt import _validation as V
from keras_opt.tflite import _convert, _report
from keras_opt.tflite._benchmark import check_counts
from keras_opt.tflite._data import InputSpec, collect_inputs, input_specs
from keras_opt.tflite._jobs import (
    ExportData,
    KerasReference,
    Runner,
    build_jobs,
    convert_all,
    shown_names,
)
from keras_opt.tflite._measure import MeasureSetup
from keras_opt.tflite._mixed import DEFAULT_MIXED_BUDGET
from keras_opt.tflite._parity import accuracy
from keras_opt.tflite._recommend import DEFAULT_ACCURACY_BUDGET, check_budget, recommend
from keras_opt.tflite._result import ExportResult, VariantResult
from keras_opt.tflite._variants import Variant, resolve_variants

__all__ = ["export", "ExportResult"]

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "tflite_models"
MANIFEST_FORMAT = "keras_opt.tflite/1"


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (
        "keras-opt",
        "tensorflow",
        "keras",
        "tf-keras",
        "ai-edge-litert",
        "ai-edge-quantizer",
        "tensorflow-model-optimization",
        "numpy",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _check_out_dir(out_dir: str) -> str:
    out_dir = os.path.abspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise ValueError(
            f"Argument `out_dir` must be a folder keras_opt can write to. Received: "
            f"out_dir={out_dir!r} ({type(err).__name__}: {err.strerror or err}). Choose another "
            f"folder or fix its permissions."
        ) from None
    return out_dir


def _resolve_batch(batch_size: int | str | None, recurrent: list[str]) -> tuple[int | None, str]:
    """The batch size the conversions start with, and why (for the manifest)."""
    if batch_size is None:
        return None, "dynamic batch (batch_size=None): any batch size at run time."
    if batch_size != "auto":
        return int(batch_size), f"fixed to {int(batch_size)} (batch_size={int(batch_size)})."
    if recurrent:
        return 1, (
            f"auto: fixed to 1 because the model has recurrent layers ({shown_names(recurrent)}), "
            "whose while loop over time steps only converts with a static batch; batch 1 is what "
            "a phone runs."
        )
    return None, (
        "auto: dynamic batch (no recurrent layers); a variant whose dynamic-batch conversion "
        "fails on a static-shape error is converted again with batch size 1."
    )


def export(
    model: Any,
    out_dir: str | os.PathLike | None = None,
    *,
    representative_data: Any = None,
    eval_data: Any = None,
    variants: str | Sequence[str] | None = None,
    metric: str | Callable[[Any, Any], float] = "accuracy",
    threads: int = 1,
    runs: int = 50,
    warmup: int = 5,
    batch_size: int | str | None = "auto",
    accuracy_budget: float = DEFAULT_ACCURACY_BUDGET,
    calibration_samples: int = 200,
    select_tf_ops: bool = False,
    int8_io_dtype: str = "int8",
    isolation: str = "variant",
    quant_debug: bool = False,
    denylist: Sequence[str] | None = None,
    mixed_budget: float = DEFAULT_MIXED_BUDGET,
    log_path: str | None = None,
    verbose: int = 0,
    on_variant: Callable[[VariantResult], None] | None = None,
) -> ExportResult:
    """Convert ``model`` to TFLite variants and measure each one from its file.

    Writes ``<out_dir>/<variant>.tflite``, ``manifest.json``, ``report.md`` and
    ``size_latency_accuracy.png``. A variant that fails to convert is recorded
    with the converter's error; the others still complete. Files are written
    atomically: no partial ``.tflite`` is ever left, and the manifest only
    names files that exist.

    Args:
        model: A built Keras model of the flavor in use (Functional,
            Sequential, multi-input, stripped TFMOT models included; a model
            with TFMOT quantization-aware layers keeps its trained ranges and
            is not re-calibrated).
        out_dir: Folder to write. Default: ``tflite_models/<model.name>``.
        representative_data: Calibration data for ``int8``, ``int8_only`` and
            ``int16x8``: numpy arrays (a list or a dict by input name for a
            multi-input model), a ``tf.data.Dataset`` or a generator of batches
            (``x`` or ``(x, y)``). About 100-500 training samples.
        eval_data: ``(x, y)`` (or ``x`` alone: parity only) to measure parity
            and the task metric on each artifact.
        variants: Names or a comma-separated string; default: the converter's
            six (``float32``, ``float16``, ``dynamic_int8``, ``int8``,
            ``int8_only``, ``int16x8``; see `VARIANTS`). Also
            ``int4_weights``, ``dynamic_int4``, ``int8_int16act`` and any
            ``aeq:<recipe>`` (AI Edge Quantizer recipes applied to the float32
            file), and ``mixed`` (needs labeled ``eval_data``). A variant that
            cannot apply to this model (int16 activations or AEQ re-quantization
            of a quantization-aware model) is left out, with the reason in
            ``manifest["left_out"]``.
        metric: ``"accuracy"`` or a callable ``metric(y_true, y_pred) -> float``.
        threads: Integer >= 1. Interpreter threads for latency and parity.
        runs: Integer >= 1. Timed runs per variant.
        warmup: Integer >= 0. Warmup runs per variant (the latency protocol is
            ``litert-benchmark``'s; see `keras_opt.tflite.benchmark`).
        batch_size: ``"auto"`` (default), None or an integer >= 1. The batch axis
            of every input in the ``.tflite`` files: None keeps it dynamic, an
            integer fixes it (1 is what a phone runs; a fixed batch also drops the
            SHAPE/STRIDED_SLICE/PACK ops that compute a dynamic batch). ``"auto"``
            fixes it to 1 for models with recurrent layers (LSTM, GRU, SimpleRNN,
            Bidirectional, ConvLSTM: they only convert with a static batch), keeps
            it dynamic otherwise, and converts a variant again with batch 1 if its
            dynamic-batch conversion fails on the static-shape error. Each
            variant's ``batch_size`` and input shapes are in the manifest.
        accuracy_budget: Float >= 0. The recommendation (``manifest
            ["recommendation"]``, first in the report) names the smallest and the
            fastest variant whose metric is at most this far below the Keras
            model's (0.01: one point of accuracy).
        calibration_samples: Integer >= 1. Samples taken from
            ``representative_data``.
        select_tf_ops: Boolean. Allow TensorFlow ops (Flex delegate needed).
        int8_io_dtype: ``"int8"`` or ``"uint8"``: I/O type of ``int8_only``.
        isolation: ``"variant"`` (a fresh process per conversion, default),
            ``"export"`` (one process for all) or ``"none"`` (in-process).
        quant_debug: Boolean. Run the QuantizationDebugger on ``int8`` and
            record the worst layers.
        denylist: Node names or op types (``"CONV_2D"``) kept in float in the
            ``int8`` variant.
        mixed_budget: Float >= 0. The ``mixed`` variant keeps the fewest layers
            in float such that its metric on ``eval_data`` is at most this far
            below the Keras model's (default 0.005: half a point of accuracy).
            The kept layers, and why, are in ``entry["mixed"]``.
        log_path: Converter log file (default ``<out_dir>/export.log``).
        verbose: Integer. 1 shows a progress bar over variants.
        on_variant: Optional callable, called with each variant's
            `VariantResult` as soon as it is measured (for custom progress
            displays); a left-out variant comes last, with ``left_out`` set.

    Returns:
        `ExportResult`; ``result.table()`` gives the rows, ``result["int8"]``
        a variant's `VariantResult` (``result["int8"].size_bytes``; mapping
        reads such as ``result["int8"]["size_bytes"]`` also work).

    Raises:
        ValueError: unknown variants, missing representative data for
            full-integer variants, data that does not fit the model's inputs,
            an unwritable ``out_dir``, or bad arguments.
        TypeError: a non-model ``model`` or wrongly typed arguments.

    Example:
        >>> import keras_opt  # doctest: +SKIP
        >>> result = keras_opt.tflite.export(  # doctest: +SKIP
        ...     model, "tflite_models/digits", representative_data=x_train[:200],
        ...     eval_data=(x_test, y_test), variants=["float32", "int8"])
        >>> print(result.format_table())  # doctest: +SKIP
    """
    from keras_opt import backend

    backend.check_model(model)
    args = _check_arguments(
        variants=variants,
        metric=metric,
        threads=threads,
        runs=runs,
        warmup=warmup,
        batch_size=batch_size,
        accuracy_budget=accuracy_budget,
        calibration_samples=calibration_samples,
        int8_io_dtype=int8_io_dtype,
        isolation=isolation,
        denylist=denylist,
        mixed_budget=mixed_budget,
        on_variant=on_variant,
    )
    qat = _convert.is_qat_model(model)
    chosen, left_out = _leave_out(args.chosen, qat)
    recurrent = _convert.recurrent_layers(model)
    batch, batch_reason = _resolve_batch(args.batch_size, recurrent)
    specs = input_specs(model)
    data = _collect_data(chosen, specs, qat, representative_data, eval_data, calibration_samples)
    name = str(getattr(model, "name", "") or "model")
    out = _check_out_dir(
        os.fspath(out_dir) if out_dir is not None else os.path.join(DEFAULT_ROOT, name)
    )
    log_path = log_path or os.path.join(out, "export.log")
    reference = _keras_reference(model, data, metric)
    setup = MeasureSetup(
        specs=specs,
        output_names=reference.output_names,
        eval_inputs=data.eval_inputs,
        labels=data.labels,
        keras_outputs=reference.outputs,
        metric=metric,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        sample=data.calibration if data.calibration is not None else data.eval_inputs,
    )
    with tempfile.TemporaryDirectory(prefix="keras_opt_tflite_") as work:
        runner = Runner(model, work, log_path, isolation, auto_batch=args.batch_size == "auto")
        jobs = build_jobs(
            chosen,
            runner=runner,
            out=out,
            batch=batch,
            specs=specs,
            data=data,
            reference=reference,
            metric=metric,
            threads=args.threads,
            select_tf_ops=select_tf_ops,
            int8_io_dtype=int8_io_dtype,
            qat=qat,
            recurrent=recurrent,
            quant_debug=quant_debug,
            denylist=denylist,
            mixed_budget=args.mixed_budget,
        )
        entries = convert_all(
            jobs,
            runner=runner,
            setup=setup,
            recurrent=recurrent,
            left_out=left_out,
            on_variant=on_variant,
            verbose=verbose,
        )

    manifest = _manifest(
        name=name,
        qat=qat,
        specs=specs,
        reference=reference,
        data=data,
        isolation=isolation,
        select_tf_ops=select_tf_ops,
        int8_io_dtype=int8_io_dtype,
        batch=(args.batch_size, batch, recurrent, batch_reason),
        setup=setup,
        entries=entries,
        left_out=left_out,
        accuracy_budget=args.accuracy_budget,
    )
    plot = _report.write_plot(out, manifest)
    manifest["plot"] = os.path.basename(plot) if plot else None
    report_path = _report.write_report(out, manifest)
    manifest_path = _report.write_manifest(out, manifest)
    return ExportResult(out, manifest, manifest_path, report_path, plot)


@dataclasses.dataclass(frozen=True)
class _Arguments:
    """`export`'s arguments after validation (the others are used as given)."""

    chosen: list[Variant]
    threads: int
    runs: int
    warmup: int
    batch_size: int | str | None
    accuracy_budget: float
    mixed_budget: float


def _check_arguments(
    *,
    variants: Any,
    metric: Any,
    threads: Any,
    runs: Any,
    warmup: Any,
    batch_size: Any,
    accuracy_budget: Any,
    calibration_samples: Any,
    int8_io_dtype: Any,
    isolation: Any,
    denylist: Any,
    mixed_budget: Any,
    on_variant: Any,
) -> _Arguments:
    """Validate `export`'s arguments (raising as documented there); return the normalised ones."""
    chosen = resolve_variants(variants)
    threads, runs, warmup = check_counts(threads, runs, warmup)
    V.integer("calibration_samples", calibration_samples, minimum=1)
    V.one_of("isolation", isolation, _convert.ISOLATION_MODES)
    V.one_of("int8_io_dtype", int8_io_dtype, ("int8", "uint8"))
    if on_variant is not None and not callable(on_variant):
        V.fail("on_variant", "a callable or None", on_variant, exc=TypeError)
    if not (metric == "accuracy" or callable(metric)):
        V.fail("metric", "'accuracy' or a callable metric(y_true, y_pred) -> float", metric)
    if denylist is not None and (
        isinstance(denylist, str) or not all(isinstance(d, str) for d in denylist)
    ):
        V.fail("denylist", "a list of node names or op types", denylist, exc=TypeError)
    if not (batch_size is None or (isinstance(batch_size, str) and batch_size == "auto")):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            V.fail("batch_size", "'auto', None or an integer >= 1", batch_size, exc=TypeError)
        V.integer("batch_size", batch_size, minimum=1)
        batch_size = int(batch_size)
    return _Arguments(
        chosen=chosen,
        threads=threads,
        runs=runs,
        warmup=warmup,
        batch_size=batch_size,
        accuracy_budget=check_budget(accuracy_budget),
        mixed_budget=float(V.non_negative("mixed_budget", mixed_budget)),  # type: ignore[arg-type]
    )


def _leave_out(chosen: list[Variant], qat: bool) -> tuple[list[Variant], dict[str, str]]:
    """The variants to convert, and those a quantization-aware model cannot have (and why)."""
    if not qat:
        return chosen, {}
    left_out = {v.name: _QAT_LEFT_OUT[v.engine] for v in chosen if _qat_incompatible(v)}
    return [v for v in chosen if v.name not in left_out], left_out


def _collect_data(
    chosen: list[Variant],
    specs: list[InputSpec],
    qat: bool,
    representative_data: Any,
    eval_data: Any,
    calibration_samples: int,
) -> ExportData:
    """Read ``representative_data`` and ``eval_data``; raise when a variant lacks what it needs."""
    needy = [v.name for v in chosen if v.needs_representative_data]
    if needy and not qat and representative_data is None:
        raise ValueError(
            f"Argument `representative_data` is required for variant(s) {', '.join(needy)}: "
            "full-integer quantization calibrates activation ranges on real inputs. Pass "
            "100-500 training samples (e.g. representative_data=x_train[:200]) or drop those "
            "variants (e.g. variants=['float32', 'float16', 'dynamic_int8']). "
            "Received: representative_data=None"
        )
    calibration = None
    if representative_data is not None:
        calibration, _ = collect_inputs(
            representative_data,
            specs,
            argument="representative_data",
            max_samples=int(calibration_samples),
        )
    eval_inputs = labels = None
    if eval_data is not None:
        eval_inputs, labels = collect_inputs(eval_data, specs, argument="eval_data")
    if any(v.engine == "mixed" for v in chosen) and labels is None:
        raise ValueError(
            "Variant 'mixed' keeps layers in float until its metric on `eval_data` is within "
            "`mixed_budget` of the Keras model's, so it needs labeled eval data: pass "
            f"eval_data=(x_test, y_test). Received: eval_data="
            f"{'inputs without labels' if eval_data is not None else 'None'}"
        )
    return ExportData(calibration, eval_inputs, labels)


def _metric_name(metric: str | Callable[[Any, Any], float]) -> str:
    """The name the manifest gives the metric: ``"accuracy"`` or the callable's name."""
    return "accuracy" if metric == "accuracy" else str(getattr(metric, "__name__", "metric"))


def _keras_reference(model: Any, data: ExportData, metric: Any) -> KerasReference:
    """Predict the eval inputs with the Keras model; its metric when there are labels."""
    output_names = list(getattr(model, "output_names", []) or [])
    metric_name = _metric_name(metric)
    if data.eval_inputs is None:
        return KerasReference(output_names, None, metric_name, {})
    inputs = data.eval_inputs
    pred = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    if isinstance(pred, dict):
        outputs = [np.asarray(pred[k]) for k in output_names or sorted(pred)]
    else:
        outputs = [np.asarray(p) for p in (pred if isinstance(pred, (list, tuple)) else [pred])]
    metrics: dict[str, float] = {}
    if data.labels is not None:
        fn = accuracy if metric == "accuracy" else metric
        metrics[metric_name] = float(fn(data.labels, outputs[0]))
    return KerasReference(output_names, outputs, metric_name, metrics)


def _manifest(
    *,
    name: str,
    qat: bool,
    specs: list[InputSpec],
    reference: KerasReference,
    data: ExportData,
    isolation: str,
    select_tf_ops: bool,
    int8_io_dtype: str,
    batch: tuple[Any, int | None, list[str], str],
    setup: MeasureSetup,
    entries: list[VariantResult],
    left_out: dict[str, str],
    accuracy_budget: float,
) -> dict[str, Any]:
    """``manifest.json``'s content (format ``keras_opt.tflite/1``), with the recommendation."""
    from keras_opt import backend

    requested, default, recurrent, reason = batch
    if data.calibration is not None:
        input_data = "first sample of representative_data"
    elif data.eval_inputs is not None:
        input_data = "first sample of eval_data"
    else:
        input_data = "random uniform(-1, 1), seed 0 (as litert-benchmark)"
    calibration, eval_inputs = data.calibration, data.eval_inputs
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": name,
            "flavor": backend.flavor(),
            "qat": qat,
            "inputs": [dataclasses.asdict(s) for s in specs],
            "outputs": reference.output_names,
        },
        "metric_name": reference.metric_name,
        "keras_metrics": reference.metrics,
        "data": {
            "calibration_samples": None if calibration is None else int(calibration[0].shape[0]),
            "eval_samples": None if eval_inputs is None else int(eval_inputs[0].shape[0]),
        },
        "converter": {
            "source": "SavedModel (tf.lite.TFLiteConverter.from_saved_model)",
            "isolation": isolation,
            "select_tf_ops": select_tf_ops,
            "int8_io_dtype": int8_io_dtype,
        },
        "batch_size": {
            "requested": requested,
            "default": default,
            "recurrent_layers": recurrent,
            "reason": reason,
        },
        "benchmark": {
            "runtime": "ai_edge_litert.interpreter",
            "threads": setup.threads,
            "runs": setup.runs,
            "warmup": setup.warmup,
            "input_data": input_data,
            "protocol": "litert-benchmark's: warmup untimed runs (the first reported as "
            "first_ms), then runs timed invoke() calls; p50 is the median",
        },
        "versions": _versions(),
        "variants": [e.to_dict() for e in entries],
        "left_out": [{"name": k, "reason": why} for k, why in left_out.items()],
        "accuracy_budget": accuracy_budget,
        "recommendation": None,
        "plot": None,
    }
    manifest["recommendation"] = recommend(manifest, accuracy_budget)
    return manifest


#: Why a variant is left out for a quantization-aware model, by engine.
_QAT_LEFT_OUT = {
    "converter": (
        "left out for a quantization-aware model: its graph carries trained int8 ranges "
        "(FakeQuant ops), and the converter cannot give those tensors int16 activations "
        "(TF 2.21 fails its 'tfl.softmax' type check: input and output must have the same "
        "element type). Ship int8 or int8_only, which use the trained ranges, or export the "
        "float model from before quantize() for int16x8."
    ),
    "aeq": (
        "left out for a quantization-aware model: AI Edge Quantizer re-quantizes a float "
        ".tflite, and this model's float32 file already passes every kernel through int8 "
        "QUANTIZE/DEQUANTIZE (its trained ranges), so AEQ would quantize nothing. Ship int8 or "
        "int8_only, or export the float model from before quantize() for AEQ variants."
    ),
    "mixed": (
        "left out for a quantization-aware model: its int8 file already uses the trained "
        "ranges that QAT fitted to every layer; keeping layers in float is for "
        "post-training int8. Ship int8."
    ),
}


def _qat_incompatible(variant: Any) -> bool:
    """True for the variants a QAT model cannot have (see `_QAT_LEFT_OUT`)."""
    if variant.engine in ("aeq", "mixed"):
        return True
    return bool(variant.ops_set and "ACTIVATIONS_INT16" in variant.ops_set)
