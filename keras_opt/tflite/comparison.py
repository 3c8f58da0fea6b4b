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
from keras_opt.tflite.convert import atomic_write
from keras_opt.tflite.report import table_rows

__all__ = ["write_comparison", "comparison_rows", "format_rows"]

HEADERS = ("model", "variant", "size", "gzipped", "p50 ms", "accuracy")


def comparison_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, variant) over several exports.

    Args:
        results: Mapping model label -> `ExportResult` (or its manifest dict).

    Returns:
        List of dicts with ``model``, ``variant``, ``size_bytes``, ``gzip_bytes``,
        ``latency_p50_ms``, ``metric`` and ``error``.
    """
    rows = []
    for label, result in results.items():
        manifest = getattr(result, "manifest", result)
        for r in table_rows(manifest):
            rows.append(
                {
                    "model": label,
                    "variant": r["name"],
                    "size_bytes": r["size_bytes"],
                    "gzip_bytes": r["gzip_bytes"],
                    "latency_p50_ms": r["latency_p50_ms"],
                    "metric": r["metric"],
                    "error": r["error"],
                }
            )
    return rows


def _cells(row: dict[str, Any], width: int | None = 60) -> list[str]:
    if row["error"]:
        error = " ".join(str(row["error"]).split())
        if width is not None and len(error) > width:
            error = error[: width - 3] + "..."
        return [row["model"], row["variant"], "failed", "", "", error]

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

    Args:
        rows: Output of `comparison_rows`.

    Returns:
        String.

    Example:
        >>> print(format_rows([{"model": "base", "variant": "int8", "size_bytes": 2048,
        ...     "gzip_bytes": 1500, "latency_p50_ms": 0.01, "metric": 0.98, "error": None}]))
        model  variant   size  gzipped  p50 ms  accuracy
        base   int8     2,048    1,500  0.0100    0.9800
    """
    table = [list(HEADERS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS) - 1)] + [0]
    out = []
    for line in table:
        cells = [
            c.ljust(w) if i < 2 or line[2] == "failed" else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _plot(rows: list[dict[str, Any]], path: str) -> str | None:
    good = [r for r in rows if not r["error"] and r["latency_p50_ms"] is not None]
    if not good:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.subplots()
    markers = "osD^v<>"
    labels = list(dict.fromkeys(r["model"] for r in good))
    metrics = [r["metric"] for r in good if r["metric"] is not None]
    lo, hi = (min(metrics), max(metrics)) if metrics else (0.0, 1.0)
    for i, label in enumerate(labels):
        mine = [r for r in good if r["model"] == label]
        sc = ax.scatter(
            [r["size_bytes"] / 1024 for r in mine],
            [r["latency_p50_ms"] for r in mine],
            c=[r["metric"] if r["metric"] is not None else lo for r in mine],
            cmap="viridis",
            vmin=lo,
            vmax=hi if hi > lo else lo + 1e-6,
            marker=markers[i % len(markers)],
            s=70,
            label=label,
            edgecolors="black",
        )
        for r in mine:
            ax.annotate(
                r["variant"],
                (r["size_bytes"] / 1024, r["latency_p50_ms"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    if metrics:
        fig.colorbar(sc, ax=ax, label="accuracy")
    ax.set_xscale("log")
    ax.set_xlabel("size (KiB, log scale)")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_title("size vs latency vs accuracy")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
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
"""


def write_comparison(
    out_dir: str | os.PathLike,
    results: Mapping[str, Any],
    *,
    title: str = "keras_opt report",
    summary: Mapping[str, Any] | None = None,
    images: Mapping[str, str] | None = None,
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
    rows = comparison_rows(results)
    plot = _plot(rows, os.path.join(out_dir, "comparison.png"))
    if plot:
        images = {"Size vs latency vs accuracy (every variant of every model)": plot, **images}
    manifests = {label: getattr(r, "manifest", r) for label, r in results.items()}
    manifest = {
        "title": title,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "summary": summary,
        "rows": rows,
        "models": manifests,
    }
    paths = {"manifest": os.path.join(out_dir, "manifest.json")}
    atomic_write(paths["manifest"], json.dumps(manifest, indent=2, default=str).encode())

    md = [f"# {title}", ""]
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

    body = [f"<h1>{html.escape(title)}</h1>"]
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
