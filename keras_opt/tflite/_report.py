"""Write the export folder's ``manifest.json``, ``report.md`` and size/latency/accuracy plot.

All three are written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from keras_opt._plotting import save_figure
from keras_opt.tflite._convert import atomic_write
from keras_opt.tflite._result import variant_results

__all__ = ["write_manifest", "write_report", "write_plot", "table_rows", "plot_points"]

COLUMNS = (
    "name",
    "size_bytes",
    "gzip_bytes",
    "latency_p50_ms",
    "latency_mean_ms",
    "metric",
    "max_abs_diff",
    "top1_agreement",
    "builtin_only",
    "batch_size",
    "same_file_as",
    "runtime_error",
    "error",
)


def table_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten the manifest's variants into one row per variant (see `COLUMNS`).

    Args:
        manifest: Dict. An export's ``manifest.json``.

    Returns:
        List of dicts, one per variant, with the keys of `COLUMNS`. ``same_file_as``
        names the earlier variant whose file is byte-identical (same sha256), or None.

    Example:
        >>> rows = table_rows({"variants": [{"name": "float32", "size_bytes": 10}]})
        >>> rows[0]["name"], rows[0]["size_bytes"], rows[0]["same_file_as"]
        ('float32', 10, None)
    """
    rows = []
    for v in variant_results(manifest):
        lat = v.latency_ms or {}
        metrics = v.metrics or {}
        parity = v.parity or {}
        ops = v.ops or {}
        rows.append(
            {
                "name": v.name,
                "size_bytes": v.size_bytes,
                "gzip_bytes": v.gzip_bytes,
                "latency_p50_ms": lat.get("p50"),
                "latency_mean_ms": lat.get("mean"),
                "metric": next(iter(metrics.values()), None),
                "max_abs_diff": parity.get("max_abs_diff"),
                "top1_agreement": parity.get("top1_agreement"),
                "builtin_only": ops.get("builtin_only"),
                "batch_size": v.batch_size,
                "same_file_as": v.same_file_as,
                "runtime_error": v.runtime_error,
                "error": v.error,
            }
        )
    return rows


def write_manifest(out_dir: str, manifest: dict[str, Any]) -> str:
    """Write ``manifest.json`` atomically; return its path.

    Args:
        out_dir: String. The export folder.
        manifest: Dict. The manifest, its ``variants`` serialised by
            `VariantResult.to_dict`.

    Returns:
        String. The path of ``manifest.json``.
    """
    path = os.path.join(out_dir, "manifest.json")
    atomic_write(path, json.dumps(manifest, indent=2, sort_keys=False).encode())
    return path


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def _batch_text(value: Any) -> str:
    return "dynamic" if value is None else str(value)


def write_report(out_dir: str, manifest: dict[str, Any]) -> str:
    """Write ``report.md``: the recommendation, a table per variant, notes; return its path.

    Args:
        out_dir: String. The export folder.
        manifest: Dict. The export's manifest (with ``recommendation`` when known).

    Returns:
        String. The path of ``report.md``.
    """
    from keras_opt.tflite._recommend import recommend, recommendation_markdown

    metric_name = manifest.get("metric_name", "metric")
    keras_metric = (manifest.get("keras_metrics") or {}).get(metric_name)
    bench = manifest["benchmark"]
    rec = manifest.get("recommendation") or recommend(manifest)
    lines = [
        f"# TFLite export: {manifest['model']['name']}",
        "",
        "## What to ship",
        "",
        *recommendation_markdown(rec),
        "",
        "## Variants",
        "",
        f"Keras flavor {manifest['model']['flavor']}; Keras {metric_name}: "
        f"{_fmt(keras_metric, '.4f')}. Latency measured with the LiteRT interpreter, "
        f"{bench['threads']} thread(s), {bench.get('warmup', '-')} warmup and {bench['runs']} "
        f"timed runs, input: {bench.get('input_data', '-')}.",
        "",
        f"| variant | batch | size (B) | gzip (B) | p50 (ms) | mean (ms) | {metric_name} | "
        "max abs diff | top-1 agree | builtin only |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in table_rows(manifest):
        if r["error"]:
            lines.append(f"| {r['name']} | | failed | | | | | | | |")
            continue
        if r["same_file_as"]:
            lines.append(
                f"| {r['name']} | {_batch_text(r['batch_size'])} | same file as "
                f"{r['same_file_as']} | | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['name']} | {_batch_text(r['batch_size'])} | {r['size_bytes']} | "
            f"{r['gzip_bytes']} | {_fmt(r['latency_p50_ms'], '.4f')} | "
            f"{_fmt(r['latency_mean_ms'], '.4f')} | {_fmt(r['metric'], '.4f')} | "
            f"{_fmt(r['max_abs_diff'], '.4g')} | {_fmt(r['top1_agreement'], '.4f')} | "
            f"{r['builtin_only']} |"
        )
    notes = []
    batch = manifest.get("batch_size") or {}
    if batch.get("reason"):
        notes.append(f"- Batch size: {batch['reason']}")
    for v in variant_results(manifest):
        ops = v.ops or {}
        if v.same_file_as:
            notes.append(
                f"- `{v.file}` is byte-identical to `{v.same_file_as}.tflite` (same "
                "sha256): the converter produced one model for both settings; its numbers are "
                f"those of {v.same_file_as}."
            )
        if v.batch_note:
            notes.append(f"- `{v.name}`: {v.batch_note}")
        if ops.get("variable_tensors") and not v.same_file_as:
            notes.append(
                f"- `{v.file}` keeps state in {ops['variable_tensors']} variable tensor(s) "
                "between invocations (a fused LSTM): the app must call "
                "`interpreter.reset_all_variables()` (C++: `ResetVariableTensors()`) before "
                "each independent input, as keras_opt's parity check does; without it the "
                "outputs drift from the second call on."
            )
        if ops.get("needs_flex_delegate"):
            notes.append(
                f"- `{v.file}` uses TensorFlow ops ({', '.join(ops['custom_ops'])}): the app "
                "needs the Flex delegate (select TF ops) to run it."
            )
        if (v.delegate or "").startswith("none ("):
            notes.append(f"- `{v.name}`: {v.delegate}; latency measured without XNNPACK.")
        if v.quant_debug:
            worst = ", ".join(w["layer"] for w in v.quant_debug["worst_layers"])
            notes.append(
                f"- `{v.name}`: layers with the largest quantization error: {worst}. "
                "Pass them as `denylist=` to keep them in float."
            )
        if v.mixed:
            kept = ", ".join(f"`{k['layer']}`" for k in v.mixed["kept_float"]) or "none"
            notes.append(f"- `{v.name}`: {v.mixed['summary']}. Kept in float: {kept}.")
        if v.error:
            notes.append(f"- **{v.name} failed**: {v.error}")
    for d in manifest.get("left_out") or []:
        notes.append(f"- `{d['name']}` {d['reason']}")
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", f"Plot: `{manifest.get('plot') or 'not written'}`.", ""]
    path = os.path.join(out_dir, "report.md")
    atomic_write(path, "\n".join(lines).encode())
    return path


def plot_points(rows: list[dict[str, Any]], group: str | None = None) -> list[dict[str, Any]]:
    """Points for the size/latency plot: one per distinct file (identical variants merged).

    Args:
        rows: Output of `table_rows`.
        group: Optional group name (a model label) for every point.

    Returns:
        List of dicts with ``label`` (``"int8 = dynamic_int8"`` for identical
        files), ``size_bytes``, ``latency_p50_ms``, ``metric`` and ``group``.
    """
    points: dict[str, dict[str, Any]] = {}
    measured = [
        r
        for r in rows
        if not r["error"] and r["latency_p50_ms"] is not None and r["size_bytes"] is not None
    ]
    for r in measured:
        if not r.get("same_file_as"):
            points[r["name"]] = {
                "label": r["name"],
                "size_bytes": r["size_bytes"],
                "latency_p50_ms": r["latency_p50_ms"],
                "metric": r["metric"],
                "group": group,
            }
    for r in measured:
        twin = r.get("same_file_as")
        if twin and twin in points:
            points[twin]["label"] += f" = {r['name']}"
    return list(points.values())


def write_plot(out_dir: str, manifest: dict[str, Any]) -> str | None:
    """Plot size vs latency (log axes, Pareto front), colored by the metric.

    Args:
        out_dir: String. The export folder.
        manifest: Dict. The export's manifest.

    Returns:
        The PNG path, or None when no variant was measured.
    """
    from keras_opt.tflite._plot import size_latency_plot

    points = plot_points(table_rows(manifest))
    if not points:
        return None
    fig = size_latency_plot(
        points,
        title=f"{manifest['model']['name']}: size vs latency vs "
        f"{manifest.get('metric_name', 'metric')}",
        metric_name=manifest.get("metric_name", "metric"),
    )
    return save_figure(fig, os.path.join(out_dir, "size_latency_accuracy.png"))
