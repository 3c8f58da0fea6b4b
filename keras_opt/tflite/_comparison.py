"""One report over several exports (e.g. baseline vs compressed): JSON, Markdown, HTML.

`write_comparison` takes the `ExportResult` of each model and writes, into one
folder, ``manifest.json`` (every model's manifest), ``report.md`` and a
self-contained ``report.html`` whose plots are inlined as base64 PNGs, so the
file opens in any browser on its own.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
from collections.abc import Mapping
from typing import Any

from keras_opt import _validation as v
from keras_opt._plotting import save_figure
from keras_opt.tflite._convert import atomic_write
from keras_opt.tflite._recommend import (
    DEFAULT_ACCURACY_BUDGET,
    recommend_rows,
    recommendation_html,
    recommendation_markdown,
)
from keras_opt.tflite._report import table_rows

__all__ = ["write_comparison", "comparison_rows", "recommend_comparison", "format_rows"]

HEADERS = ("model", "variant", "size", "gzipped", "p50 ms", "accuracy")


def comparison_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, variant) over several exports.

    Args:
        results: Mapping model label -> `ExportResult` (or its manifest dict).

    Returns:
        List of dicts with ``model``, ``variant``, ``size_bytes``, ``gzip_bytes``,
        ``latency_p50_ms``, ``metric``, ``same_file_as`` (the variant of the same
        model whose file is byte-identical, or None), ``runtime_error`` and ``error``;
        a variant the export left out has ``left_out`` (the reason) instead of numbers.

    Example:
        >>> m = {"variants": [{"name": "int8", "size_bytes": 9, "latency_ms": {"p50": 0.1}},
        ...                   {"name": "float16", "same_file_as": "int8"}]}
        >>> [(r["variant"], r["same_file_as"]) for r in comparison_rows({"qat": m})]
        [('int8', None), ('float16', 'int8')]
    """
    if not isinstance(results, Mapping):
        v.fail("results", "a mapping of model label -> ExportResult", results, exc=TypeError)
    rows = []
    for label, result in results.items():
        manifest = dict(getattr(result, "manifest", result) or {})
        for r in table_rows(manifest):
            rows.append(
                {
                    "model": label,
                    "variant": r["name"],
                    "size_bytes": r["size_bytes"],
                    "gzip_bytes": r["gzip_bytes"],
                    "latency_p50_ms": r["latency_p50_ms"],
                    "metric": r["metric"],
                    "same_file_as": r["same_file_as"],
                    "runtime_error": r["runtime_error"],
                    "error": r["error"],
                }
            )
        for d in manifest.get("left_out") or []:  # e.g. int16x8 of a QAT model, and why
            rows.append(
                {
                    "model": label,
                    "variant": d["name"],
                    "size_bytes": None,
                    "gzip_bytes": None,
                    "latency_p50_ms": None,
                    "metric": None,
                    "same_file_as": None,
                    "runtime_error": None,
                    "error": None,
                    "left_out": d["reason"],
                }
            )
    return rows


def recommend_comparison(
    results: Mapping[str, Any],
    *,
    accuracy_budget: float = DEFAULT_ACCURACY_BUDGET,
    reference: str | None = None,
) -> dict[str, Any]:
    """What to ship over several exports: the smallest and fastest ``model/variant`` in budget.

    Args:
        results: Mapping model label -> `ExportResult` (or its manifest dict).
        accuracy_budget: Float >= 0. How far below the reference Keras metric a
            variant may be (0.01: one point of accuracy).
        reference: Label of the model whose Keras metric is the reference
            (default: the first, e.g. the uncompressed baseline).

    Returns:
        Dict as `recommend_rows`, with names
        ``"<model>/<variant>"`` and ``reference`` (the label used).

    Example:
        >>> m = {"metric_name": "accuracy", "keras_metrics": {"accuracy": 0.9},
        ...      "variants": [{"name": "int8", "size_bytes": 9, "latency_ms": {"p50": 0.1},
        ...                    "metrics": {"accuracy": 0.9}}]}
        >>> recommend_comparison({"base": m})["smallest"]["name"]
        'base/int8'
    """
    if not isinstance(results, Mapping) or not results:
        v.fail("results", "a non-empty mapping of model label -> ExportResult", results)
    manifests = {label: getattr(r, "manifest", r) for label, r in results.items()}
    label = reference if reference is not None else next(iter(manifests))
    if label not in manifests:
        v.fail("reference", f"one of {list(manifests)}", reference)
    ref = manifests[label]
    metric = str(ref.get("metric_name", "accuracy"))
    rows = [
        {
            **r,
            "name": f"{r['model']}/{r['variant']}",
            "same_file_as": f"{r['model']}/{r['same_file_as']}" if r["same_file_as"] else None,
        }
        for r in comparison_rows(results)
    ]
    rec = recommend_rows(
        rows,
        reference=(ref.get("keras_metrics") or {}).get(metric),
        metric=metric,
        accuracy_budget=accuracy_budget,
    )
    rec["reference"] = label
    return rec


def _cells(row: dict[str, Any], width: int | None = 60) -> list[str]:
    if row["error"]:
        error = " ".join(str(row["error"]).split())
        if width is not None and len(error) > width:
            error = error[: width - 3] + "..."
        return [row["model"], row["variant"], "failed", "", "", error]

    if row.get("same_file_as"):
        return [row["model"], row["variant"], "same file as", row["same_file_as"], "", ""]
    if row.get("left_out"):
        reason = " ".join(str(row["left_out"]).split())
        if width is not None and len(reason) > width:
            reason = reason[: width - 3] + "..."
        return [row["model"], row["variant"], "left out", "", "", reason]

    def num(x: Any, spec: str) -> str:
        return "" if x is None else format(x, spec)

    return [
        row["model"],
        row["variant"],
        num(row["size_bytes"], ","),
        num(row["gzip_bytes"], ","),
        num(row["latency_p50_ms"], ".4f"),
        num(row["metric"], ".4f"),
    ]


def format_rows(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of `comparison_rows` (for terminals).

    A failed, left-out or byte-identical variant gets one line of text after
    its name instead of numbers.

    Args:
        rows: Output of `comparison_rows`.

    Returns:
        String.

    Example:
        >>> print(format_rows([{"model": "base", "variant": "int8", "size_bytes": 2048,
        ...     "gzip_bytes": 1500, "latency_p50_ms": 0.01, "metric": 0.98, "error": None},
        ...     {"model": "base", "variant": "float16", "same_file_as": "int8", "error": None}]))
        model  variant   size  gzipped  p50 ms  accuracy
        base   int8     2,048    1,500  0.0100    0.9800
        base   float16  same file as int8
    """
    from keras_opt.tflite._table import format_table

    lines = []
    for r in rows:
        cells = _cells(r)
        if cells[2] == "same file as":
            lines.append([*cells[:2], f"same file as {cells[3]}"])
        elif cells[2] == "failed":
            lines.append([*cells[:2], f"failed: {cells[5]}"])
        elif cells[2] == "left out":
            reason = cells[5] if cells[5].startswith("left out") else f"left out: {cells[5]}"
            lines.append([*cells[:2], reason])
        else:
            lines.append(cells)
    return format_table(HEADERS, lines, left=2)


def _plot(rows: list[dict[str, Any]], path: str, metric_name: str = "accuracy") -> str | None:
    from keras_opt.tflite._plot import size_latency_plot
    from keras_opt.tflite._report import plot_points

    labels = list(dict.fromkeys(r["model"] for r in rows))
    points = []
    for label in labels:
        mine = [
            {**r, "name": r["variant"]} for r in rows if r["model"] == label
        ]  # table_rows-shaped
        for p in plot_points(mine, group=label):
            p["label"] = f"{label}/{p['label']}" if len(labels) > 1 else p["label"]
            points.append(p)
    if not points:
        return None
    fig = size_latency_plot(
        points,
        title=f"size vs latency vs {metric_name} (every variant of every model)",
        metric_name=metric_name,
        groups=labels,
    )
    return save_figure(fig, path)


def _img(path: str, alt: str) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    alt = html.escape(alt)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
        f"<figcaption>{alt}</figcaption></figure>"
    )


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}
th,td{padding:.3rem .7rem;border-bottom:1px solid #ddd}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4;text-align:left}
tr.failed td{color:#a00}td.err{max-width:36rem;font-size:.85rem}
pre{white-space:pre-wrap;word-break:break-all;font-size:.75rem}
figure{margin:1rem 0}img{max-width:100%;border:1px solid #eee}
.note{color:#555;font-size:.9rem}
#recommendation{background:#f3f8f3;border:1px solid #cde3cd;padding:.2rem 1rem;margin:1rem 0}
tr.same td.same{color:#666;font-style:italic}
"""


def write_comparison(
    out_dir: str | os.PathLike,
    results: Mapping[str, Any],
    *,
    title: str = "keras_opt report",
    summary: Mapping[str, Any] | None = None,
    images: Mapping[str, str] | None = None,
    accuracy_budget: float = DEFAULT_ACCURACY_BUDGET,
    reference: str | None = None,
) -> dict[str, str]:
    """Write ``manifest.json``, ``report.md`` and a self-contained ``report.html``.

    Args:
        out_dir: Folder to write (created if missing).
        results: Mapping model label -> `ExportResult`, e.g.
            ``{"baseline": r1, "pcqat": r2}``.
        title: String. Report title.
        summary: Mapping of headline facts (label -> value) shown first.
        images: Mapping caption -> PNG path, inlined in the HTML and linked
            from the Markdown.
        accuracy_budget: Float >= 0. Both reports open with the smallest and the
            fastest ``model/variant`` whose metric is at most this far below the
            reference Keras model's (0.01: one point), and why the others are not
            chosen (see `recommend_comparison`).
        reference: Label of the reference model (default: the first in ``results``).

    Returns:
        Dict with the paths of ``manifest``, ``markdown``, ``html`` and ``plot``.

    Raises:
        ValueError: if ``results`` is empty.

    Example:
        >>> from keras_opt.tflite import write_comparison  # doctest: +SKIP
        >>> paths = write_comparison(  # doctest: +SKIP
        ...     "tflite_models/digits", {"baseline": r1, "pcqat": r2})
    """
    if not results:
        v.fail("results", "a non-empty mapping of model label -> ExportResult", results)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    summary = dict(summary or {})
    images = dict(images or {})
    rec = recommend_comparison(results, accuracy_budget=accuracy_budget, reference=reference)
    rows = comparison_rows(results)
    plot = _plot(rows, os.path.join(out_dir, "comparison.png"), rec["metric"])
    if plot:
        images = {"Size vs latency vs accuracy (every variant of every model)": plot, **images}
    manifests = {label: getattr(r, "manifest", r) for label, r in results.items()}
    manifest = {
        "title": title,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "summary": summary,
        "recommendation": rec,
        "rows": rows,
        "models": manifests,
    }
    paths = {"manifest": os.path.join(out_dir, "manifest.json")}
    atomic_write(paths["manifest"], json.dumps(manifest, indent=2, default=str).encode())

    md = [f"# {title}", "", "## What to ship", ""]
    md += recommendation_markdown(rec)
    md += ["", f"Reference: the Keras model `{rec['reference']}`.", "", "## Details", ""]
    for k, val in summary.items():
        md.append(f"- **{k}**: {val}")
    md += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    md += ["| " + " | ".join(c.replace("|", "/") for c in _cells(r, 200)) + " |" for r in rows]
    md.append("")
    for caption, path in images.items():
        md.append(f"![{caption}]({os.path.relpath(path, out_dir)})")
    md += ["", "Every number is measured from the `.tflite` file: size on disk, LiteRT latency,"]
    md += [
        "accuracy of the artifact on held-out data. Per-model details: "
        + ", ".join(
            f"`{os.path.relpath(getattr(r, 'report_path', ''), out_dir)}`"
            for r in results.values()
            if getattr(r, "report_path", None)
        )
    ]
    paths["markdown"] = os.path.join(out_dir, "report.md")
    atomic_write(paths["markdown"], ("\n".join(md) + "\n").encode())

    body = [f"<h1>{html.escape(title)}</h1>", recommendation_html(rec)]
    body.append(
        f'<p class="note">Reference: the Keras model {html.escape(str(rec["reference"]))}.</p>'
    )
    if summary:
        body.append("<ul>")
        body += [
            f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(val))}</li>"
            for k, val in summary.items()
        ]
        body.append("</ul>")
    body.append('<table id="variants"><thead><tr>')
    body += [f"<th>{h}</th>" for h in HEADERS]
    body.append("</tr></thead><tbody>")
    for r in rows:
        cells = _cells(r, None)
        tds = [f"<td>{html.escape(c)}</td>" for c in cells[:2]]
        if r["error"]:
            short = html.escape(_cells(r, 120)[5])
            tds.append(
                f'<td colspan="4" class="err">failed: <details><summary>{short}</summary>'
                f"<pre>{html.escape(str(r['error']))}</pre></details></td>"
            )
            body.append('<tr class="failed">' + "".join(tds) + "</tr>")
            continue
        if r.get("left_out"):
            tds.append(f'<td colspan="4" class="same">{html.escape(str(r["left_out"]))}</td>')
            body.append('<tr class="same">' + "".join(tds) + "</tr>")
            continue
        if r.get("same_file_as"):
            tds.append(
                f'<td colspan="4" class="same">same file as {html.escape(r["same_file_as"])} '
                "(identical sha256)</td>"
            )
            body.append('<tr class="same">' + "".join(tds) + "</tr>")
            continue
        tds += [f'<td class="n">{html.escape(c)}</td>' for c in cells[2:]]
        body.append("<tr>" + "".join(tds) + "</tr>")
    body.append("</tbody></table>")
    body += [_img(path, caption) for caption, path in images.items() if os.path.exists(path)]
    body.append(
        '<p class="note">Every number is measured from the .tflite file: size on disk, '
        "LiteRT latency, accuracy of the artifact on held-out data.</p>"
    )
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>"
    )
    paths["html"] = os.path.join(out_dir, "report.html")
    atomic_write(paths["html"], page.encode())
    paths["plot"] = plot or ""
    return paths
