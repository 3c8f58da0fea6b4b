"""Conversion jobs of `export`: one per variant, run with the batch-1 retry, each file measured.

`build_jobs` writes the data files a worker reads and one job per variant;
`Runner` runs them as ``isolation`` asks (and converts again with batch 1 when
``batch_size="auto"`` meets a static-shape error); `convert_all` measures every
file with `measure_entry`, copying the numbers of a byte-identical earlier file.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_opt.tflite import _convert
from keras_opt.tflite._data import InputSpec
from keras_opt.tflite._measure import MeasureSetup, measure_artifact
from keras_opt.tflite._result import VariantResult
from keras_opt.tflite._variants import Variant

logger = logging.getLogger("keras_opt.tflite._export")  # the logger of export(), which runs these

#: How many layer names a message shows before "...".
SHOWN_LAYERS = 3


def shown_names(layers: Sequence[str]) -> str:
    """The first `SHOWN_LAYERS` names, comma-separated, then "..." if there are more."""
    more = ", ..." if len(layers) > SHOWN_LAYERS else ""
    return ", ".join(layers[:SHOWN_LAYERS]) + more


@dataclasses.dataclass(frozen=True)
class ExportData:
    """Calibration and eval arrays, read once from the user's data."""

    calibration: list[np.ndarray] | None
    eval_inputs: list[np.ndarray] | None
    labels: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class KerasReference:
    """The Keras model on the eval data: its outputs and metric (what the files are held to)."""

    output_names: list[str]
    outputs: list[np.ndarray] | None
    metric_name: str
    metrics: dict[str, float]


class Runner:
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


def build_jobs(
    chosen: list[Variant],
    *,
    runner: Runner,
    out: str,
    batch: int | None,
    specs: list[InputSpec],
    data: ExportData,
    reference: KerasReference,
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
            "metric": metric_for_worker(metric, work),
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


def convert_all(
    jobs: list[dict[str, Any]],
    *,
    runner: Runner,
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
                res["error"] = calibrator_crash(recurrent, res["error"])
            entry = measure_entry(job, res, setup, entries, by_hash)
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


def calibrator_crash(recurrent: list[str], error: str) -> str:
    return (
        "The converter crashed in full-integer calibration: TensorFlow's "
        f"calibrator segfaults on the while loop of recurrent layers ({shown_names(recurrent)}) "
        "(seen with TF 2.21 for Keras 3 LSTM/GRU/SimpleRNN and tf_keras GRU/SimpleRNN; a "
        "tf_keras LSTM converts to a fused op and quantizes). Ship dynamic_int8 (int8 "
        f"weights) or float16 instead. Converter: {error}"
    )


def measure_entry(
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
        fields = {**dict.fromkeys(OWN_FIELDS), **own, "same_file_as": twin, **extras}
        return dataclasses.replace(copied, **fields)
    by_hash[digest] = vname
    measured = measure_artifact(path, setup)
    return VariantResult.from_dict({**measured, **own, **extras})


def metric_for_worker(metric: Any, work: str) -> Any:
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
OWN_FIELDS = frozenset(
    {"name", "file", "error", "batch_size", "batch_note", "same_file_as", "converter"}
)
