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
from keras_opt.tflite import convert as _convert
from keras_opt.tflite import report as _report
from keras_opt.tflite.benchmark import check_counts
from keras_opt.tflite.data import collect_inputs, input_specs
from keras_opt.tflite.measure import measure_artifact
from keras_opt.tflite.parity import accuracy
from keras_opt.tflite.result import ExportResult
from keras_opt.tflite.variants import resolve_variants

__all__ = ["export", "ExportResult"]

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "tflite_models"


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (
        "keras-opt",
        "tensorflow",
        "keras",
        "tf-keras",
        "ai-edge-litert",
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
    calibration_samples: int = 200,
    select_tf_ops: bool = False,
    int8_io_dtype: str = "int8",
    isolation: str = "variant",
    quant_debug: bool = False,
    denylist: Sequence[str] | None = None,
    log_path: str | None = None,
    verbose: int = 0,
    on_variant: Callable[[dict[str, Any]], None] | None = None,
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
            ``int16x8``: numpy arrays, a ``tf.data.Dataset`` or a generator
            (see `keras_opt.tflite.data.collect_inputs`). About 100-500
            training samples.
        eval_data: ``(x, y)`` (or ``x`` alone: parity only) to measure parity
            and the task metric on each artifact.
        variants: Names or a comma-separated string; default: all of
            `keras_opt.tflite.VARIANTS`.
        metric: ``"accuracy"`` or a callable ``metric(y_true, y_pred) -> float``.
        threads: Integer >= 1. Interpreter threads for latency and parity.
        runs: Integer >= 1. Timed runs per variant.
        warmup: Integer >= 0. Warmup runs per variant.
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
        log_path: Converter log file (default ``<out_dir>/export.log``).
        verbose: Integer. 1 shows a progress bar over variants.
        on_variant: Optional callable, called with each variant's manifest
            entry as soon as it is measured (for custom progress displays).

    Returns:
        `ExportResult`; ``result.table()`` gives the rows, ``result["int8"]``
        a variant's manifest entry.

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
    chosen = resolve_variants(variants)
    threads, runs, warmup = check_counts(threads, runs, warmup)
    V.integer("calibration_samples", calibration_samples, minimum=1)
    calibration_samples = int(calibration_samples)
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
    qat = _convert.is_qat_model(model)
    specs = input_specs(model)
    needy = [v.name for v in chosen if v.needs_representative_data]
    calibration = None
    if needy and not qat and representative_data is None:
        raise ValueError(
            f"Argument `representative_data` is required for variant(s) {', '.join(needy)}: "
            "full-integer quantization calibrates activation ranges on real inputs. Pass "
            "100-500 training samples (e.g. representative_data=x_train[:200]) or drop those "
            "variants (e.g. variants=['float32', 'float16', 'dynamic_int8']). "
            "Received: representative_data=None"
        )
    if representative_data is not None:
        calibration, _ = collect_inputs(
            representative_data,
            specs,
            argument="representative_data",
            max_samples=calibration_samples,
        )
    eval_inputs = y = None
    if eval_data is not None:
        eval_inputs, y = collect_inputs(eval_data, specs, argument="eval_data")
    name = str(getattr(model, "name", "") or "model")
    out = _check_out_dir(
        os.fspath(out_dir) if out_dir is not None else os.path.join(DEFAULT_ROOT, name)
    )
    log_path = log_path or os.path.join(out, "export.log")

    keras_outputs = None
    keras_metrics: dict[str, float] = {}
    output_names = list(getattr(model, "output_names", []) or [])
    if eval_inputs is not None:
        pred = model.predict(eval_inputs if len(eval_inputs) > 1 else eval_inputs[0], verbose=0)
        keras_outputs = [
            np.asarray(p) for p in (pred if isinstance(pred, (list, tuple)) else [pred])
        ]
        if isinstance(pred, dict):
            keras_outputs = [np.asarray(pred[k]) for k in output_names or sorted(pred)]
        if y is not None:
            fn = accuracy if metric == "accuracy" else metric
            mname = "accuracy" if metric == "accuracy" else getattr(metric, "__name__", "metric")
            keras_metrics[mname] = float(fn(y, keras_outputs[0]))  # type: ignore[operator]
    metric_name = "accuracy" if metric == "accuracy" else getattr(metric, "__name__", "metric")
    sample = calibration if calibration is not None else eval_inputs

    entries: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="keras_opt_tflite_") as work:
        saved = os.path.join(work, "saved_model")
        _convert.save_source(model, saved)
        calib_file = None
        if calibration is not None:
            calib_file = os.path.join(work, "calibration.npz")
            np.savez(calib_file, *calibration)
        jobs: list[dict[str, Any]] = []
        for v in chosen:
            settings = v.converter_settings(
                select_tf_ops=select_tf_ops, io_dtype=int8_io_dtype, qat=qat
            )
            job: dict[str, Any] = {
                "saved_model": saved,
                "variant": v.name,
                "settings": settings,
                "calibration": calib_file if settings["calibrated"] else None,
                "input_names": [s.name for s in specs],
                "path": os.path.join(out, f"{v.name}.tflite"),
            }
            if v.name == "int8" and calibration is not None:
                job["quant_debug"] = bool(quant_debug)
                job["denylist"] = list(denylist) if denylist else None
                job["calibration"] = calib_file
                settings["denylist"] = job["denylist"]
            jobs.append(job)
        bar = None
        if verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc="tflite export", unit="variant")
        try:
            pre = {}
            if isolation == "export":
                pre = {
                    r["variant"]: r
                    for r in _convert.run_jobs(
                        jobs, isolation="export", workdir=work, log_path=log_path
                    )
                }
            for job in jobs:
                vname = job["variant"]
                if bar is not None:
                    bar.set_postfix_str(vname)
                res = (
                    pre.get(vname)
                    or _convert.run_jobs(
                        [job], isolation=isolation, workdir=work, log_path=log_path
                    )[0]
                )
                entry: dict[str, Any] = {"name": vname, "file": None, "error": res["error"]}
                if res["error"] is None and os.path.exists(job["path"]):
                    entry.update(
                        measure_artifact(
                            vname,
                            job["path"],
                            specs,
                            output_names,
                            eval_inputs,
                            y,
                            keras_outputs,
                            metric,
                            threads,
                            runs,
                            warmup,
                            sample,
                        )
                    )
                    if res.get("quant_debug"):
                        entry["quant_debug"] = res["quant_debug"]
                else:
                    if os.path.exists(job["path"]):  # stale artifact of an earlier export
                        os.remove(job["path"])
                    entry["error"] = entry["error"] or "conversion produced no file"
                    logger.warning("variant %s failed: %s", vname, entry["error"])
                entry["converter"] = job["settings"]
                entries[vname] = _ordered(entry)
                if on_variant is not None:
                    on_variant(entries[vname])
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    manifest: dict[str, Any] = {
        "format": "keras_opt.tflite/1",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": name,
            "flavor": backend.flavor(),
            "qat": qat,
            "inputs": [dataclasses.asdict(s) for s in specs],
            "outputs": output_names,
        },
        "metric_name": metric_name,
        "keras_metrics": keras_metrics,
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
        "benchmark": {
            "runtime": "ai_edge_litert.interpreter",
            "threads": threads,
            "runs": runs,
            "warmup": warmup,
        },
        "versions": _versions(),
        "variants": list(entries.values()),
        "plot": None,
    }
    plot = _report.write_plot(out, manifest)
    manifest["plot"] = os.path.basename(plot) if plot else None
    report_path = _report.write_report(out, manifest)
    manifest_path = _report.write_manifest(out, manifest)
    return ExportResult(out, manifest, manifest_path, report_path, plot)


_FIELD_ORDER = (
    "name",
    "file",
    "error",
    "size_bytes",
    "gzip_bytes",
    "sha256",
    "latency_ms",
    "threads",
    "delegate",
    "metrics",
    "parity",
    "ops",
    "inputs",
    "outputs",
    "latency",
    "converter",
    "quant_debug",
    "runtime_error",
)


def _ordered(entry: dict[str, Any]) -> dict[str, Any]:
    """Put every required manifest field in place (None when not measured)."""
    out = {k: entry.get(k) for k in _FIELD_ORDER[:12]}
    out.update({k: v for k, v in entry.items() if k not in out})
    return out
