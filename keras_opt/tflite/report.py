"""Write the export folder's ``manifest.json``, ``report.md`` and size/latency/accuracy plot.

All three are written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from keras_opt._plotting import save_figure
from keras_opt.tflite.convert import atomic_write

__all__ = ["write_manifest", "write_report", "write_plot", "table_rows"]

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
    "error",
)


def table_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten the manifest's variants into one row per variant (see `COLUMNS`)."""
    rows = []
    for v in manifest["variants"]:
        lat = v.get("latency_ms") or {}
        metrics = v.get("metrics") or {}
        parity = v.get("parity") or {}
        ops = v.get("ops") or {}
        rows.append(
            {
                "name": v["name"],
                "size_bytes": v.get("size_bytes"),
                "gzip_bytes": v.get("gzip_bytes"),
                "latency_p50_ms": lat.get("p50"),
                "latency_mean_ms": lat.get("mean"),
                "metric": next(iter(metrics.values()), None),
                "max_abs_diff": parity.get("max_abs_diff"),
                "top1_agreement": parity.get("top1_agreement"),
                "builtin_only": ops.get("builtin_only"),
                "error": v.get("error"),
            }
        )
    return rows


def write_manifest(out_dir: str, manifest: dict[str, Any]) -> str:
    """Write ``manifest.json`` atomically; return its path."""
    path = os.path.join(out_dir, "manifest.json")
    atomic_write(path, json.dumps(manifest, indent=2, sort_keys=False).encode())
    return path


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def write_report(out_dir: str, manifest: dict[str, Any]) -> str:
    """Write ``report.md`` (a table per variant, notes, failures); return its path."""
    metric_name = manifest.get("metric_name", "metric")
    keras_metric = (manifest.get("keras_metrics") or {}).get(metric_name)
    lines = [
        f"# TFLite export: {manifest['model']['name']}",
        "",
        f"Keras flavor {manifest['model']['flavor']}; Keras {metric_name}: "
        f"{_fmt(keras_metric, '.4f')}. Latency measured with the LiteRT interpreter, "
        f"{manifest['benchmark']['threads']} thread(s), {manifest['benchmark']['runs']} runs.",
        "",
        f"| variant | size (B) | gzip (B) | p50 (ms) | mean (ms) | {metric_name} | "
        "max abs diff | top-1 agree | builtin only |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in table_rows(manifest):
        if r["error"]:
            lines.append(f"| {r['name']} | failed | | | | | | | |")
            continue
        lines.append(
            f"| {r['name']} | {r['size_bytes']} | {r['gzip_bytes']} | "
            f"{_fmt(r['latency_p50_ms'], '.4f')} | {_fmt(r['latency_mean_ms'], '.4f')} | "
            f"{_fmt(r['metric'], '.4f')} | {_fmt(r['max_abs_diff'], '.4g')} | "
            f"{_fmt(r['top1_agreement'], '.4f')} | {r['builtin_only']} |"
        )
    notes = []
    for v in manifest["variants"]:
        ops = v.get("ops") or {}
        if ops.get("needs_flex_delegate"):
            notes.append(
                f"- `{v['file']}` uses TensorFlow ops ({', '.join(ops['custom_ops'])}): the app "
                "needs the Flex delegate (select TF ops) to run it."
            )
        if (v.get("delegate") or "").startswith("none ("):
            notes.append(f"- `{v['name']}`: {v['delegate']}; latency measured without XNNPACK.")
        if v.get("quant_debug"):
            worst = ", ".join(w["layer"] for w in v["quant_debug"]["worst_layers"])
            notes.append(
                f"- `{v['name']}`: layers with the largest quantization error: {worst}. "
                "Pass them as `denylist=` to keep them in float."
            )
        if v.get("error"):
            notes.append(f"- **{v['name']} failed**: {v['error']}")
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", f"Plot: `{manifest.get('plot') or 'not written'}`.", ""]
    path = os.path.join(out_dir, "report.md")
    atomic_write(path, "\n".join(lines).encode())
    return path


def write_plot(out_dir: str, manifest: dict[str, Any]) -> str | None:
    """Plot size vs latency, colored by the metric; return the PNG path (None if empty)."""
    rows = [r for r in table_rows(manifest) if not r["error"] and r["latency_p50_ms"] is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    sizes = [r["size_bytes"] / 1024 for r in rows]
    lat = [r["latency_p50_ms"] for r in rows]
    metric = [r["metric"] for r in rows]
    if all(m is not None for m in metric):
        sc = ax.scatter(sizes, lat, c=metric, cmap="viridis", s=60)
        fig.colorbar(sc, ax=ax, label=manifest.get("metric_name", "metric"))
    else:
        ax.scatter(sizes, lat, s=60)
    for r, x, y in zip(rows, sizes, lat, strict=False):
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("size (KiB)")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_title(f"{manifest['model']['name']}: size vs latency vs accuracy")
    fig.tight_layout()
    return save_figure(fig, os.path.join(out_dir, "size_latency_accuracy.png"))
