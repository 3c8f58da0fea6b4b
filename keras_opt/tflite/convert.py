"""Convert a SavedModel into TFLite variants, isolated and written atomically.

The TFLite converter leaks about 20 MB per call (TensorFlow #122598), so by
default each variant is converted in a fresh Python process
(``isolation="variant"``); ``"export"`` uses one process for the whole
export and ``"none"`` converts in-process. Files are written to a temporary
name and moved into place with ``os.replace``: a failed or interrupted
conversion leaves no partial ``.tflite``.

This module is also the worker: ``python -m keras_opt.tflite.convert JOBS.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_opt.tflite.variants import VARIANTS

__all__ = ["save_source", "is_qat_model", "run_jobs", "convert_variant", "ISOLATION_MODES"]

logger = logging.getLogger(__name__)

ISOLATION_MODES = ("variant", "export", "none")

_INTERPRETER_WARNING = ".*tf.lite.Interpreter is deprecated.*"
_QAT_LAYERS = {"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer", "QuantizeAnnotate"}


def is_qat_model(model: Any) -> bool:
    """Return True if ``model`` carries TFMOT quantization-aware-training layers."""
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        if type(layer).__name__ in _QAT_LAYERS:
            return True
        stack.extend(getattr(layer, "layers", []) or [])
    return False


def save_source(model: Any, directory: str) -> None:
    """Save ``model`` as a SavedModel that the converter (and a worker) can read."""
    from keras_opt.backend import is_tf_keras

    if is_tf_keras():
        import tensorflow as tf

        tf.saved_model.save(model, directory)
    else:
        model.export(directory, format="tf_saved_model", verbose=False)


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
) -> bytes:
    """Convert one variant and return the ``.tflite`` bytes.

    Args:
        saved_model_dir: String. SavedModel written by `save_source`.
        variant_name: String. A key of `VARIANTS`.
        settings: Dict from `Variant.converter_settings`.
        calibration: List of arrays (one per input, batch first) or None.
        input_names: Signature input names matching ``calibration``'s order.

    Returns:
        Bytes of the flatbuffer.
    """
    import tensorflow as tf

    from keras_opt.tflite.data import as_generator

    variant = VARIANTS[variant_name]
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    gen = None
    if settings["calibrated"]:
        if calibration is None:
            raise ValueError(f"Variant {variant_name!r} needs representative data.")
        sig = signature_input_names(saved_model_dir)
        names = list(input_names) if input_names and set(sig) == set(input_names) else sig
        gen = as_generator(calibration, names)
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
    data: bytes | None = None
    try:
        if job.get("denylist") or job.get("quant_debug"):
            from keras_opt.tflite.debugger import quantization_debug

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
            )
        if data is None:
            raise RuntimeError("the QuantizationDebugger returned no model")
        atomic_write(job["path"], data)
    except Exception as err:  # the converter raises many types; record, go on
        logger.debug("variant %s failed", job["variant"], exc_info=True)
        return {"variant": job["variant"], "error": _explain(f"{type(err).__name__}: {err}")}
    return {
        "variant": job["variant"],
        "error": None,
        "seconds": time.perf_counter() - t0,
        "quant_debug": debug,
    }


def _run_subprocess(jobs: list[dict], workdir: str, log_path: str | None, tag: str) -> list[dict]:
    job_file = os.path.join(workdir, f"jobs-{tag}.json")
    result_file = os.path.join(workdir, f"results-{tag}.json")
    with open(job_file, "w") as f:
        json.dump({"jobs": jobs, "results": result_file}, f)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "keras_opt.tflite.convert", job_file],
            stdout=log,
            stderr=log,
            env=env,
            check=False,
        )
    finally:
        log.close()
    done: dict[str, dict] = {}
    if os.path.exists(result_file):
        with open(result_file) as f:
            done = {r["variant"]: r for r in json.load(f)}
    where = f"; details in {log_path}" if log_path else ""
    return [
        done.get(
            job["variant"],
            {
                "variant": job["variant"],
                "error": f"The converter process exited with status {proc.returncode} before "
                f"finishing this variant{where}.",
            },
        )
        for job in jobs
    ]


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
