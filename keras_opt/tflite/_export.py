"""`export`: a Keras model becomes a folder of measured ``.tflite`` variants.

Every number in the result is measured from the written file: size (raw and
gzipped) and sha256, LiteRT latency, parity with Keras on the eval data, ops
and quantization details.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
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
from keras_opt.tflite._measure import MeasureSetup, measure_artifact
from keras_opt.tflite._mixed import DEFAULT_MIXED_BUDGET
from keras_opt.tflite._parity import accuracy
from keras_opt.tflite._recommend import DEFAULT_ACCURACY_BUDGET, check_budget, recommend
from keras_opt.tflite._result import ExportResult, VariantResult
from keras_opt.tflite._variants import Variant, resolve_variants

__all__ = ["export", "ExportResult"]

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "tflite_models"
MANIFEST_FORMAT = "keras_opt.tflite/1"
#: How many layer names a message shows before "...".
_SHOWN_LAYERS = 3


def _names(layers: Sequence[str]) -> str:
    """The first `_SHOWN_LAYERS` names, comma-separated, then "..." if there are more."""
    more = ", ..." if len(layers) > _SHOWN_LAYERS else ""
    return ", ".join(layers[:_SHOWN_LAYERS]) + more


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
            f"auto: fixed to 1 because the model has recurrent layers ({_names(recurrent)}), whose "
            "while loop over time steps only converts with a static batch; batch 1 is what "
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
        runner = _Runner(model, work, log_path, isolation, auto_batch=args.batch_size == "auto")
        jobs = _build_jobs(
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
        entries = _convert_all(
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


@dataclasses.dataclass(frozen=True)
class _Data:
    """Calibration and eval arrays, read once from the user's data."""

    calibration: list[np.ndarray] | None
    eval_inputs: list[np.ndarray] | None
    labels: np.ndarray | None


def _collect_data(
    chosen: list[Variant],
    specs: list[InputSpec],
    qat: bool,
    representative_data: Any,
    eval_data: Any,
    calibration_samples: int,
) -> _Data:
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
    return _Data(calibration, eval_inputs, labels)


def _metric_name(metric: str | Callable[[Any, Any], float]) -> str:
    """The name the manifest gives the metric: ``"accuracy"`` or the callable's name."""
    return "accuracy" if metric == "accuracy" else str(getattr(metric, "__name__", "metric"))


@dataclasses.dataclass(frozen=True)
class _Reference:
    """The Keras model on the eval data: its outputs and metric (what the files are held to)."""

    output_names: list[str]
    outputs: list[np.ndarray] | None
    metric_name: str
    metrics: dict[str, float]


def _keras_reference(model: Any, data: _Data, metric: Any) -> _Reference:
    """Predict the eval inputs with the Keras model; its metric when there are labels."""
    output_names = list(getattr(model, "output_names", []) or [])
    metric_name = _metric_name(metric)
    if data.eval_inputs is None:
        return _Reference(output_names, None, metric_name, {})
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
    return _Reference(output_names, outputs, metric_name, metrics)


class _Runner:
    """Runs conversion jobs as ``isolation`` asks, with the batch-1 retry of ``"auto"``."""

    def __init__(
        self, model: Any, work: str, log_path: str, isolation: str, *, auto_batch: bool
    ) -> None:
        self.model = model
        self.work = work
        self.log_path = log_path
        self.isolation = isolation
        self.auto_batch = auto_batch
        self._saved: dict[int | None, str] = {}

    def source(self, batch: int | None) -> str:
        """The model saved as a SavedModel with this batch axis (saved once per batch)."""
        if batch not in self._saved:
            self._saved[batch] = os.path.join(self.work, f"saved_model_b{batch or 'dyn'}")
            _convert.save_source(self.model, self._saved[batch], batch_size=batch)
        return self._saved[batch]

    def _run(self, jobs: list[dict[str, Any]], isolation: str) -> list[dict[str, Any]]:
        return _convert.run_jobs(
            jobs, isolation=isolation, workdir=self.work, log_path=self.log_path
        )

    def _needs_retry(self, job: dict[str, Any], res: dict[str, Any]) -> bool:
        """A dynamic-batch conversion of ``batch_size="auto"`` failed on a static-shape error."""
        return (
            self.auto_batch
            and job["batch_size"] is None
            and bool(res.get("error"))
            and _convert.needs_static_batch(str(res["error"]))
        )

    def _fixed(self, job: dict[str, Any]) -> dict[str, Any]:
        return {**job, "saved_model": self.source(1), "batch_size": 1}

    def run_upfront(self, jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """With ``isolation="export"``: every job in one worker process, by variant name."""
        if self.isolation != "export":
            return {}
        done = {
            r["variant"]: r for r in self._run([j for j in jobs if not j.get("inline")], "export")
        }
        again = [
            j for j in jobs if j["variant"] in done and self._needs_retry(j, done[j["variant"]])
        ]
        if again:
            for r in self._run([self._fixed(j) for j in again], "export"):
                done[r["variant"]] = {**r, "retried": done[r["variant"]]["error"]}
        return done

    def run_one(self, job: dict[str, Any]) -> dict[str, Any]:
        """Convert one job (in-process when its metric cannot go to a worker)."""
        mode = "none" if job.get("inline") else self.isolation
        res = self._run([job], mode)[0]
        if self._needs_retry(job, res):
            first_error = res["error"]
            res = self._run([self._fixed(job)], mode)[0]
            res["retried"] = first_error
        return res


def _build_jobs(
    chosen: list[Variant],
    *,
    runner: _Runner,
    out: str,
    batch: int | None,
    specs: list[InputSpec],
    data: _Data,
    reference: _Reference,
    metric: Any,
    threads: int,
    select_tf_ops: bool,
    int8_io_dtype: str,
    qat: bool,
    recurrent: list[str],
    quant_debug: bool,
    denylist: Sequence[str] | None,
    mixed_budget: float,
) -> list[dict[str, Any]]:
    """One conversion job per variant (the worker's JSON), with the data files they read."""
    work = runner.work
    calib_file = None
    if data.calibration is not None:
        calib_file = os.path.join(work, "calibration.npz")
        np.savez(calib_file, *data.calibration)
    mixed_spec = None
    mixed = any(v.engine == "mixed" for v in chosen)
    if mixed and data.eval_inputs is not None and data.labels is not None:
        eval_file = os.path.join(work, "eval.npz")
        np.savez(eval_file, *data.eval_inputs, data.labels)
        mixed_spec = {
            "eval": eval_file,
            "reference": reference.metrics[reference.metric_name],
            "budget": float(mixed_budget),
            "metric": _metric_for_worker(metric, work),
            "output_names": reference.output_names,
            "threads": threads,
        }
    jobs: list[dict[str, Any]] = []
    for v in chosen:
        settings = v.converter_settings(
            select_tf_ops=select_tf_ops, io_dtype=int8_io_dtype, qat=qat
        )
        job: dict[str, Any] = {
            "saved_model": runner.source(batch),
            "batch_size": batch,
            "variant": v.name,
            "settings": settings,
            "calibration": calib_file if settings["calibrated"] else None,
            "input_names": [s.name for s in specs],
            "path": os.path.join(out, f"{v.file_stem}.tflite"),
        }
        if v.engine == "mixed":
            job["mixed"] = mixed_spec
            # A metric that cannot be pickled for a worker is evaluated in-process.
            job["inline"] = callable(mixed_spec["metric"]) if mixed_spec else False
        if recurrent and settings["calibrated"]:
            job["isolate"] = True  # TF 2.21's calibrator segfaults on while loops
        if v.name == "int8" and data.calibration is not None:
            job["quant_debug"] = bool(quant_debug)
            job["denylist"] = list(denylist) if denylist else None
            job["calibration"] = calib_file
            settings["denylist"] = job["denylist"]
        jobs.append(job)
    return jobs


def _convert_all(
    jobs: list[dict[str, Any]],
    *,
    runner: _Runner,
    setup: MeasureSetup,
    recurrent: list[str],
    left_out: dict[str, str],
    on_variant: Callable[[VariantResult], None] | None,
    verbose: int,
) -> list[VariantResult]:
    """Convert and measure every job in order, reporting each to ``on_variant`` and the bar."""
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="tflite export", unit="variant")
    entries: dict[str, VariantResult] = {}
    by_hash: dict[str, str] = {}
    try:
        upfront = runner.run_upfront(jobs)
        for job in jobs:
            if bar is not None:
                bar.set_postfix_str(job["variant"])
            res = upfront.get(job["variant"]) or runner.run_one(job)
            if res.get("crashed") and recurrent and job["settings"]["calibrated"]:
                res["error"] = _calibrator_crash(recurrent, res["error"])
            entry = _measure_entry(job, res, setup, entries, by_hash)
            entries[entry.name] = entry
            if on_variant is not None:
                on_variant(entry)
            if bar is not None:
                bar.update(1)
        for vname, reason in left_out.items():
            logger.info("variant %s left out: %s", vname, reason)
            if on_variant is not None:
                on_variant(VariantResult(name=vname, left_out=reason))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return list(entries.values())


def _calibrator_crash(recurrent: list[str], error: str) -> str:
    return (
        "The converter crashed in full-integer calibration: TensorFlow's "
        f"calibrator segfaults on the while loop of recurrent layers ({_names(recurrent)}) "
        "(seen with TF 2.21 for Keras 3 LSTM/GRU/SimpleRNN and tf_keras GRU/SimpleRNN; a "
        "tf_keras LSTM converts to a fused op and quantizes). Ship dynamic_int8 (int8 "
        f"weights) or float16 instead. Converter: {error}"
    )


def _measure_entry(
    job: dict[str, Any],
    res: dict[str, Any],
    setup: MeasureSetup,
    entries: dict[str, VariantResult],
    by_hash: dict[str, str],
) -> VariantResult:
    """The variant's entry: measured from its file, copied from an identical earlier file
    (same sha256, recorded in ``by_hash``), or the error that left no file."""
    vname, path = job["variant"], job["path"]
    own: dict[str, Any] = {
        "name": vname,
        "error": res["error"],
        "batch_size": 1 if res.get("retried") else job["batch_size"],
        "converter": job["settings"],
    }
    if res.get("retried"):
        own["batch_note"] = (
            "the dynamic-batch conversion failed (tf.TensorListReserve needs a "
            "static shape), so this variant was converted with batch size 1."
        )
    extras: dict[str, Any] = {}
    if res.get("mixed"):
        extras["mixed"] = res["mixed"]
    if res["error"] is not None or not os.path.exists(path):
        if os.path.exists(path):  # stale artifact of an earlier export
            os.remove(path)
        own["error"] = own["error"] or "conversion produced no file"
        logger.warning("variant %s failed: %s", vname, own["error"])
        return VariantResult(**own, **extras)
    if res.get("quant_debug"):
        extras["quant_debug"] = res["quant_debug"]
    own["file"] = os.path.basename(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    twin = by_hash.get(digest)
    if twin is not None:  # same bytes as an earlier variant: same numbers
        copied = copy.deepcopy(entries[twin])
        fields = {**dict.fromkeys(_OWN_FIELDS), **own, "same_file_as": twin, **extras}
        return dataclasses.replace(copied, **fields)
    by_hash[digest] = vname
    measured = measure_artifact(path, setup)
    return VariantResult.from_dict({**measured, **own, **extras})


def _manifest(
    *,
    name: str,
    qat: bool,
    specs: list[InputSpec],
    reference: _Reference,
    data: _Data,
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


def _metric_for_worker(metric: Any, work: str) -> Any:
    """``"accuracy"``, the path of a pickled metric, or the callable itself (in-process)."""
    if metric == "accuracy":
        return metric
    import pickle

    try:
        data = pickle.dumps(metric)
        pickle.loads(data)
    except Exception:  # lambdas, closures: evaluated in this process instead
        return metric
    path = os.path.join(work, "metric.pkl")
    with open(path, "wb") as f:
        f.write(data)
    return path


#: Fields of a variant's entry that are its own even when its file is another's twin.
_OWN_FIELDS = frozenset(
    {"name", "file", "error", "batch_size", "batch_note", "same_file_as", "converter"}
)
