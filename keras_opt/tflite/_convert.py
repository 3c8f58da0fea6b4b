"""Convert a SavedModel into TFLite variants, isolated and written atomically.

The TFLite converter leaks about 20 MB per call (TensorFlow #122598), so by
default each variant is converted in a fresh Python process
(``isolation="variant"``); ``"export"`` uses one process for the whole
export and ``"none"`` converts in-process. Files are written to a temporary
name and moved into place with ``os.replace``: a failed or interrupted
conversion leaves no partial ``.tflite``.

This module is also the worker: ``python -m keras_opt.tflite._convert JOBS.json``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_opt.tflite._variants import VARIANTS

__all__ = [
    "save_source",
    "is_qat_model",
    "recurrent_layers",
    "needs_static_batch",
    "run_jobs",
    "convert_variant",
    "ISOLATION_MODES",
]

logger = logging.getLogger(__name__)

ISOLATION_MODES = ("variant", "export", "none")

_RUN_IDS = itertools.count()

_INTERPRETER_WARNING = ".*tf.lite.Interpreter is deprecated.*"


def is_qat_model(model: Any) -> bool:
    """Return True if ``model`` carries quantization-aware-training layers.

    Both engines count: TFMOT's quantize wrappers (tf_keras) and keras_opt's native
    ``QuantizeKernel``/``QuantizeOutput`` (Keras 3), nested models included: it is
    ``"quantize" in keras_opt.optimization.compression_of(model)``.
    """
    from keras_opt.optimization import compression_of

    return "quantize" in compression_of(model)


#: Layer classes whose TensorFlow graph holds a while loop over time steps.
_RECURRENT_BASES = ("RNN", "Bidirectional", "ConvRNN", "ConvLSTM", "ConvLSTM2D")


def recurrent_layers(model: Any) -> list[str]:
    """Names of the recurrent layers in ``model`` (nested models and wrappers included).

    LSTM, GRU, SimpleRNN, ConvLSTM, ``RNN(cell)`` and ``Bidirectional`` compile to a
    while loop over time steps whose ``TensorListReserve`` needs a static batch size
    in the TFLite converter.

    Args:
        model: A Keras model of either flavor.

    Returns:
        List of layer names, outermost first (empty for a feed-forward model).
    """
    found: list[str] = []
    stack = list(getattr(model, "layers", []))
    seen: set[int] = set()
    while stack:
        layer = stack.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        bases = {klass.__name__ for klass in type(layer).__mro__}
        if bases & set(_RECURRENT_BASES):
            found.append(str(layer.name))
            continue
        stack.extend(getattr(layer, "layers", []) or [])
        inner = getattr(layer, "layer", None)  # TimeDistributed and other wrappers
        if inner is not None:
            stack.append(inner)
    return found


def needs_static_batch(error: str) -> bool:
    """True if a converter error is the dynamic-batch failure that batch 1 fixes."""
    return "TensorListReserve" in error or "element_shape to be static" in error


def _fixed_batch_signature(model: Any, batch_size: int) -> Any:
    """Keras 3: the export input signature with the batch axis set to ``batch_size``."""
    import tensorflow as tf

    from keras_opt.backend import keras

    try:
        from keras.src.export.export_utils import get_input_signature

        signature = get_input_signature(model)
    except ImportError:  # pragma: no cover - older Keras 3
        signature = [list(model.inputs)]

    def fix(spec: Any) -> Any:
        shape = tuple(spec.shape)
        dtype = getattr(spec, "dtype", None) or "float32"
        name = getattr(spec, "name", None)
        return tf.TensorSpec((batch_size, *shape[1:]), tf.as_dtype(dtype), name=name)

    return keras.tree.map_structure(fix, signature)


def save_source(model: Any, directory: str, batch_size: int | None = None) -> None:
    """Save ``model`` as a SavedModel that the converter (and a worker) can read.

    Args:
        model: A Keras model of the flavor in use.
        directory: String. The SavedModel folder to write.
        batch_size: Integer or None. Fix the batch axis of every input (None keeps
            it dynamic). A fixed batch lets recurrent layers convert and removes the
            SHAPE/STRIDED_SLICE/PACK ops that compute a dynamic batch at run time.
    """
    from keras_opt.backend import is_tf_keras

    if is_tf_keras():
        import tensorflow as tf

        if batch_size is None:
            tf.saved_model.save(model, directory)
            return
        names = [str(t.name).split(":")[0] for t in model.inputs]
        specs = [
            tf.TensorSpec((batch_size, *tuple(t.shape)[1:]), t.dtype, name=name)
            for t, name in zip(model.inputs, names, strict=True)
        ]
        output_names = list(getattr(model, "output_names", []) or [])

        @tf.function(input_signature=specs)
        def serve(*args: Any) -> Any:
            out = model(list(args) if len(args) > 1 else args[0], training=False)
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            if len(set(output_names)) == len(outs):
                return dict(zip(output_names, outs, strict=True))
            return outs

        tf.saved_model.save(model, directory, signatures=serve.get_concrete_function())
    elif batch_size is None:
        model.export(directory, format="tf_saved_model", verbose=False)
    else:
        model.export(
            directory,
            format="tf_saved_model",
            verbose=False,
            input_signature=_fixed_batch_signature(model, batch_size),
        )


def signature_input_names(saved_model_dir: str) -> list[str]:
    """Input names of the ``serving_default`` signature, in converter order."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)
    spec = loaded.signatures["serving_default"].structured_input_signature[1]
    return list(spec)


def _explain(error: str) -> str:
    """Turn a converter error into one actionable message (keeping the original)."""
    ops = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", error)
    ops += re.findall(r"tf\.(\w+)\s*\{[^}]*\}\s*$", error, flags=re.MULTILINE)
    lines = [ln.strip() for ln in error.strip().splitlines()]
    useful = [ln for ln in lines if ln and "loc(" not in ln and not ln.startswith("<unknown>")]
    detail = " ".join(useful or lines).split(' "func.func"')[0][:600]
    if needs_static_batch(error):
        return (
            "The TFLite converter needs a static batch size for this model's recurrent "
            "layers (tf.TensorListReserve requires element_shape to be static). Export with "
            "batch_size=1 or batch_size='auto' (CLI: --batch-size 1), which is what a phone "
            f"runs. Converter error: {detail}"
        )
    if ops:
        names = ", ".join(dict.fromkeys(ops))
        return (
            f"The TFLite converter cannot express op(s) {names} with TFLite builtins. "
            f"Re-export with select_tf_ops=True (CLI: --select-tf-ops) to run them through "
            f"TensorFlow ops (the app must then link the Flex delegate), or replace them in "
            f"the model. Converter error: {detail}"
        )
    return f"Conversion failed: {detail}"


def convert_variant(
    saved_model_dir: str,
    variant_name: str,
    settings: dict,
    calibration: Sequence[np.ndarray] | None,
    input_names: Sequence[str] | None = None,
    batch_size: int | None = None,
) -> bytes:
    """Convert one variant and return the ``.tflite`` bytes.

    Args:
        saved_model_dir: String. SavedModel written by `save_source`.
        variant_name: String. A key of `VARIANTS`.
        settings: Dict from `Variant.converter_settings`.
        calibration: List of arrays (one per input, batch first) or None.
        input_names: Signature input names matching ``calibration``'s order.
        batch_size: Integer or None. The SavedModel's fixed batch size (calibration
            batches then have exactly that many samples).

    Returns:
        Bytes of the flatbuffer.
    """
    import tensorflow as tf

    from keras_opt.tflite._data import as_generator

    variant = VARIANTS[variant_name]
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    gen = None
    if settings["calibrated"]:
        if calibration is None:
            raise ValueError(f"Variant {variant_name!r} needs representative data.")
        sig = signature_input_names(saved_model_dir)
        names = list(input_names) if input_names and set(sig) == set(input_names) else sig
        gen = as_generator(calibration, names, batch_size=batch_size or 1)
    variant.configure(converter, settings, gen)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INTERPRETER_WARNING)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        content = converter.convert()
    if settings.get("io_rewrite"):
        from tensorflow.lite.python.util import modify_model_io_type

        dtype = tf.uint8 if settings["inference_input_type"] == "uint8" else tf.int8
        content = modify_model_io_type(content, dtype, dtype)
    return bytes(content)


def _write_payload(handle: Any, data: bytes) -> None:
    handle.write(data)


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            _write_payload(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _run_job(job: dict) -> dict:
    """Convert and write one job; never raises for a conversion error."""
    t0 = time.perf_counter()
    calibration = None
    if job.get("calibration"):
        with np.load(job["calibration"]) as npz:
            calibration = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    debug = None
    mixed = None
    data: bytes | None = None
    engine = job["settings"].get("engine", "converter")
    try:
        if engine == "aeq":
            data = _aeq_job(job, calibration)
        elif engine == "mixed":
            data, mixed = _mixed_job(job, calibration)
        else:
            if job.get("denylist") or job.get("quant_debug"):
                from keras_opt.tflite._debugger import quantization_debug

                debug, data = quantization_debug(
                    job["saved_model"],
                    job["settings"],
                    calibration or [],
                    job.get("input_names") or [],
                    denylist=job.get("denylist"),
                    analyze=bool(job.get("quant_debug")),
                )
            if not job.get("denylist"):
                data = convert_variant(
                    job["saved_model"],
                    job["variant"],
                    job["settings"],
                    calibration,
                    job.get("input_names"),
                    job.get("batch_size"),
                )
        if data is None:
            raise RuntimeError("the QuantizationDebugger returned no model")
        atomic_write(job["path"], data)
    except Exception as err:  # the converter and AEQ raise many types; record, go on
        logger.debug("variant %s failed", job["variant"], exc_info=True)
        text = f"{type(err).__name__}: {err}"
        if engine == "aeq":
            error = f"AI Edge Quantizer (recipe {job['settings'].get('recipe')}) failed: {text}"
        elif engine == "mixed" and isinstance(err, ValueError) and str(err).startswith("mixed:"):
            error = str(err)
        else:
            error = _explain(text)
        return {"variant": job["variant"], "error": error, "mixed": getattr(err, "report", None)}
    return {
        "variant": job["variant"],
        "error": None,
        "seconds": time.perf_counter() - t0,
        "quant_debug": debug,
        "mixed": mixed,
    }


def _float_source(job: dict) -> bytes:
    """The float32 ``.tflite`` of the job's SavedModel, converted once per export and batch."""
    path = job["saved_model"].rstrip("/\\") + ".float32.tflite"
    if os.path.exists(path):
        with open(path, "rb") as f:
            return f.read()
    settings = VARIANTS["float32"].converter_settings(
        select_tf_ops=False, io_dtype="int8", qat=False
    )
    data = convert_variant(job["saved_model"], "float32", settings, None)
    atomic_write(path, data)
    return data


def _aeq_job(job: dict, calibration: list[np.ndarray] | None) -> bytes:
    from keras_opt.tflite._aeq import quantize_tflite

    settings = job["settings"]
    return quantize_tflite(
        _float_source(job),
        settings["recipe"],
        calibration if settings.get("calibrated") else None,
        job.get("input_names") or [],
        int8_depthwise=bool(settings.get("int8_depthwise")),
    )


def _mixed_job(job: dict, calibration: list[np.ndarray] | None) -> tuple[bytes, dict]:
    import pickle

    from keras_opt.tflite._mixed import mixed_int8

    spec = job["mixed"]
    with np.load(spec["eval"]) as npz:
        count = len(npz.files) - 1
        eval_inputs = [npz[f"arr_{i}"] for i in range(count)]
        y = npz[f"arr_{count}"]
    metric = spec["metric"]
    if metric != "accuracy" and isinstance(metric, str):  # a pickled callable (a file)
        with open(metric, "rb") as f:
            metric = pickle.load(f)
    if calibration is None:
        raise ValueError("Variant 'mixed' needs representative data.")
    return mixed_int8(
        job["saved_model"],
        job["settings"],
        calibration,
        job.get("input_names") or [],
        eval_inputs=eval_inputs,
        y=y,
        reference=spec["reference"],
        budget=spec["budget"],
        metric=metric,
        output_names=spec.get("output_names"),
        threads=spec.get("threads", 1),
    )


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"crashed (signal {signal.Signals(-returncode).name})"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _run_subprocess(jobs: list[dict], workdir: str, log_path: str | None, tag: str) -> list[dict]:
    """Run ``jobs`` in worker processes; a crash costs only the job it happened in.

    When the worker dies (the converter segfaults on some graphs), the job it was
    converting gets an error naming the signal, and the jobs after it run in a
    fresh worker.
    """
    done: dict[str, dict] = {}
    pending = list(jobs)
    where = f"; details in {log_path}" if log_path else ""
    while pending:
        unique = f"{tag}-{next(_RUN_IDS)}"  # never read another run's results
        job_file = os.path.join(workdir, f"jobs-{unique}.json")
        result_file = os.path.join(workdir, f"results-{unique}.json")
        with open(job_file, "w") as f:
            json.dump({"jobs": pending, "results": result_file}, f)
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        log = open(log_path or os.devnull, "ab")  # noqa: SIM115
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "keras_opt.tflite._convert", job_file],
                stdout=log,
                stderr=log,
                env=env,
                check=False,
            )
        finally:
            log.close()
        if os.path.exists(result_file):
            with open(result_file) as f:
                done.update({r["variant"]: r for r in json.load(f)})
        left = [j for j in pending if j["variant"] not in done]
        if left:  # the worker died while converting left[0]
            done[left[0]["variant"]] = {
                "variant": left[0]["variant"],
                "error": f"The converter process {_exit_text(proc.returncode)} while "
                f"converting this variant{where}.",
                "crashed": True,
            }
            left = left[1:]
        pending = left
    return [done[job["variant"]] for job in jobs]


def run_jobs(
    jobs: list[dict],
    *,
    isolation: str,
    workdir: str,
    log_path: str | None = None,
    on_done: Any = None,
) -> list[dict]:
    """Run conversion jobs, isolated as asked; return one result dict per job.

    Each job is a dict with ``saved_model``, ``variant``, ``settings``,
    ``calibration`` (an ``.npz`` path or None), ``input_names`` and ``path``
    (the final ``.tflite`` path). A result has ``variant`` and ``error``
    (None on success).
    """
    results: list[dict] = []
    if isolation == "none":
        for job in jobs:
            # Jobs marked "isolate" (the converter is known to crash on them) still get
            # a worker process, so a segfault cannot take the caller's process down.
            if job.get("isolate"):
                results.extend(_run_subprocess([job], workdir, log_path, "isolated"))
            else:
                results.append(_run_job(job))
            if on_done:
                on_done(results[-1])
    elif isolation == "export":
        results = _run_subprocess(jobs, workdir, log_path, "all")
        if on_done:
            for r in results:
                on_done(r)
    else:
        for i, job in enumerate(jobs):
            results.extend(_run_subprocess([job], workdir, log_path, str(i)))
            if on_done:
                on_done(results[-1])
    return results


def _main(argv: Sequence[str]) -> int:
    with open(argv[0]) as f:
        spec = json.load(f)
    results = []
    for job in spec["jobs"]:
        results.append(_run_job(job))
        atomic_write(spec["results"], json.dumps(results).encode())
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(_main(sys.argv[1:]))
