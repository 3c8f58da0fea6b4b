"""Which variant to ship: the smallest and the fastest within an accuracy budget.

A variant meets the budget when its metric, measured on the ``.tflite`` file,
is at most ``accuracy_budget`` below the Keras model's (default 0.01: one
point of accuracy). Among those, `recommend` names the smallest file and the
fastest p50 latency, and says for every other variant why it is not chosen:
it failed to convert, LiteRT cannot run it, it is the same file as another
variant, it misses the budget, or another variant is both smaller and faster.
The metric is taken as higher-is-better.

Example:
    >>> rows = [
    ...     {"name": "float32", "size_bytes": 4000, "latency_p50_ms": 0.020, "metric": 0.95},
    ...     {"name": "int8", "size_bytes": 1200, "latency_p50_ms": 0.030, "metric": 0.946},
    ...     {"name": "int16x8", "size_bytes": 1300, "latency_p50_ms": 0.500, "metric": 0.90},
    ... ]
    >>> rec = recommend_rows(rows, reference=0.95)
    >>> rec["smallest"]["name"], rec["fastest"]["name"]
    ('int8', 'float32')
    >>> rec["why_not"]["int16x8"]
    'accuracy 0.9000 is 5.0 points below the Keras model (0.9500; budget 1.0 point)'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keras_opt import _validation as V

__all__ = [
    "recommend",
    "recommend_rows",
    "recommendation_lines",
    "recommendation_markdown",
    "recommendation_html",
    "DEFAULT_ACCURACY_BUDGET",
]

DEFAULT_ACCURACY_BUDGET = 0.01
"""Default budget: the variant's metric at most 0.01 (one point of accuracy) below Keras."""


def check_budget(accuracy_budget: Any, argument: str = "accuracy_budget") -> float:
    """Validate an accuracy budget (a number >= 0, in the metric's units)."""
    value = V.non_negative(argument, accuracy_budget)
    return float(value or 0.0)


def _gap(metric: str, gap: float) -> str:
    if metric == "accuracy":
        points = gap * 100
        return f"{points:.1f} point{'' if abs(points - 1) < 1e-9 else 's'}"
    return f"{gap:.4g}"


def _short(error: Any, width: int = 240) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _brief(row: Mapping[str, Any], metric: str) -> dict[str, Any]:
    return {
        "name": row["name"],
        "size_bytes": row.get("size_bytes"),
        "latency_p50_ms": row.get("latency_p50_ms"),
        "metric": row.get("metric"),
        "metric_name": metric,
    }


def recommend_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    reference: float | None,
    metric: str = "accuracy",
    accuracy_budget: float = DEFAULT_ACCURACY_BUDGET,
) -> dict[str, Any]:
    """Pick the smallest and the fastest row whose metric is within budget of ``reference``.

    Args:
        rows: Sequence of dicts with ``name``, ``size_bytes``, ``latency_p50_ms``,
            ``metric`` and optionally ``error``, ``runtime_error`` and
            ``same_file_as`` (as `table_rows` gives).
        reference: Float or None. The Keras model's metric (None: not measured,
            no recommendation).
        metric: String. The metric's name, for the messages.
        accuracy_budget: Float >= 0. How far below ``reference`` a variant may be.

    Returns:
        Dict with ``metric``, ``keras_metric``, ``accuracy_budget``, ``threshold``,
        ``smallest`` and ``fastest`` (``name``, ``size_bytes``,
        ``latency_p50_ms``, ``metric``; None when no variant meets the budget),
        ``meets_budget`` (names), ``why_not`` (name -> reason, for every
        variant not chosen) and ``summary`` (one sentence).

    Example:
        >>> rec = recommend_rows([{"name": "a", "size_bytes": 10, "latency_p50_ms": 1.0,
        ...                        "metric": 0.5}], reference=0.9)
        >>> rec["smallest"], rec["summary"]
        (None, 'No variant is within 1.0 point of the Keras model (0.9000).')
    """
    budget = check_budget(accuracy_budget)
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
        V.fail("rows", "a list of variant rows", rows, exc=TypeError)
    if reference is not None:
        V.number("reference", reference)
    threshold = None if reference is None else float(reference) - budget
    why_not: dict[str, str] = {}
    ok: list[Mapping[str, Any]] = []
    for r in rows:
        name = r["name"]
        if r.get("error"):
            why_not[name] = f"failed to convert: {_short(r['error'])}"
        elif r.get("runtime_error"):
            why_not[name] = f"LiteRT cannot run it: {_short(r['runtime_error'])}"
        elif r.get("left_out"):
            why_not[name] = _short(r["left_out"])
        elif r.get("same_file_as"):
            why_not[name] = f"same file as {r['same_file_as']} (identical sha256)"
        elif r.get("latency_p50_ms") is None or r.get("size_bytes") is None:
            why_not[name] = "not measured"
        elif threshold is None or r.get("metric") is None:
            why_not[name] = f"{metric} not measured (pass labeled eval data)"
        elif float(r["metric"]) < threshold - 1e-12:
            why_not[name] = (
                f"{metric} {r['metric']:.4f} is {_gap(metric, float(reference) - r['metric'])} "  # type: ignore[arg-type]
                f"below the Keras model ({reference:.4f}; budget {_gap(metric, budget)})"
            )
        else:
            ok.append(r)
    smallest = min(ok, key=lambda r: (r["size_bytes"], r["latency_p50_ms"])) if ok else None
    fastest = min(ok, key=lambda r: (r["latency_p50_ms"], r["size_bytes"])) if ok else None
    for r in ok:
        if smallest is None or fastest is None or r is smallest or r is fastest:
            continue
        why_not[r["name"]] = (
            f"meets the budget, but {smallest['name']} is smaller ({smallest['size_bytes']:,} "
            f"vs {r['size_bytes']:,} bytes) and {fastest['name']} is faster "
            f"({fastest['latency_p50_ms']:.4f} vs {r['latency_p50_ms']:.4f} ms p50)"
        )
    within = f"within {_gap(metric, budget)} of the Keras model"
    if reference is None:
        summary = (
            f"No recommendation: the Keras model's {metric} was not measured "
            "(pass eval_data=(x, y) with labels)."
        )
    elif smallest is None or fastest is None:
        summary = f"No variant is {within} ({reference:.4f})."
    elif smallest is fastest:
        summary = (
            f"Ship {smallest['name']}: the smallest and the fastest variant {within} "
            f"({metric} {smallest['metric']:.4f} vs {reference:.4f})."
        )
    else:
        summary = (
            f"Ship {smallest['name']} for size or {fastest['name']} for speed: the smallest "
            f"and the fastest variant {within} ({reference:.4f})."
        )
    order = [r["name"] for r in rows]
    return {
        "metric": metric,
        "keras_metric": reference,
        "accuracy_budget": budget,
        "threshold": threshold,
        "smallest": _brief(smallest, metric) if smallest else None,
        "fastest": _brief(fastest, metric) if fastest else None,
        "meets_budget": [r["name"] for r in ok],
        "why_not": {n: why_not[n] for n in order if n in why_not},
        "summary": summary,
    }


def recommend(manifest: Any, accuracy_budget: float = DEFAULT_ACCURACY_BUDGET) -> dict[str, Any]:
    """The variant to ship from an export's manifest (see `recommend_rows`).

    Args:
        manifest: Dict (``manifest.json`` of `keras_opt.tflite.export`) or an
            `ExportResult`.
        accuracy_budget: Float >= 0. How far below the Keras model's metric a
            variant may be (in the metric's units: 0.01 is one point of accuracy).

    Returns:
        Dict, as `recommend_rows`.

    Raises:
        TypeError: if ``manifest`` is not an export manifest.
        ValueError: for a negative budget.

    Example:
        >>> from keras_opt.tflite._recommend import recommend
        >>> rec = recommend(result, accuracy_budget=0.02)  # doctest: +SKIP
        >>> rec["smallest"]["name"], rec["why_not"]  # doctest: +SKIP
        ('int8', {'int16x8': 'accuracy 0.9100 is 4.0 points below ...'})
    """
    from keras_opt.tflite._report import table_rows

    manifest = getattr(manifest, "manifest", manifest)
    if not isinstance(manifest, Mapping) or "variants" not in manifest:
        V.fail("manifest", "an export manifest (dict with 'variants') or ExportResult",
               type(manifest).__name__, exc=TypeError)  # fmt: skip
    metric = str(manifest.get("metric_name", "accuracy"))
    reference = (manifest.get("keras_metrics") or {}).get(metric)
    return recommend_rows(
        table_rows(dict(manifest)),
        reference=reference,
        metric=metric,
        accuracy_budget=accuracy_budget,
    )


def _choice(label: str, row: Mapping[str, Any] | None) -> str:
    if row is None:
        return f"{label}: none"
    return (
        f"{label}: {row['name']} ({row['size_bytes']:,} bytes, p50 "
        f"{row['latency_p50_ms']:.4f} ms, {row['metric_name']} {row['metric']:.4f})"
    )


def recommendation_lines(rec: Mapping[str, Any]) -> list[str]:
    """The recommendation as plain lines: summary, smallest, fastest, why not the others.

    Args:
        rec: Dict from `recommend` or `recommend_rows`.

    Returns:
        List of strings (no trailing newlines).

    Example:
        >>> rec = recommend_rows([{"name": "int8", "size_bytes": 1200, "latency_p50_ms": 0.03,
        ...                        "metric": 0.95}], reference=0.95)
        >>> print("\\n".join(recommendation_lines(rec)))
        Ship int8: the smallest and the fastest variant within 1.0 point of the Keras model (accuracy 0.9500 vs 0.9500).
          smallest: int8 (1,200 bytes, p50 0.0300 ms, accuracy 0.9500)
          fastest: int8 (1,200 bytes, p50 0.0300 ms, accuracy 0.9500)
    """  # noqa: E501
    lines = [str(rec["summary"])]
    if rec.get("smallest") or rec.get("fastest"):
        lines.append("  " + _choice("smallest", rec.get("smallest")))
        lines.append("  " + _choice("fastest", rec.get("fastest")))
    why = rec.get("why_not") or {}
    if why:
        lines.append("  not chosen:")
        lines += [f"    {name}: {reason}" for name, reason in why.items()]
    return lines


def recommendation_markdown(rec: Mapping[str, Any]) -> list[str]:
    """The recommendation as Markdown lines (a bold summary, then bullet lists).

    Args:
        rec: Dict from `recommend` or `recommend_rows`.

    Returns:
        List of strings.

    Example:
        >>> rec = recommend_rows([{"name": "int8", "size_bytes": 1200, "latency_p50_ms": 0.03,
        ...                        "metric": 0.95}], reference=0.95)
        >>> recommendation_markdown(rec)[2]
        '- **smallest**: int8 (1,200 bytes, p50 0.0300 ms, accuracy 0.9500)'
    """
    lines = [f"**{rec['summary']}**", ""]
    if rec.get("smallest") or rec.get("fastest"):
        for label in ("smallest", "fastest"):
            lines.append("- **" + _choice(label, rec.get(label)).replace(": ", "**: ", 1))
    why = rec.get("why_not") or {}
    if why:
        lines += ["", "Not chosen:", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in why.items()]
    return lines


def recommendation_html(rec: Mapping[str, Any]) -> str:
    """The recommendation as an HTML fragment (``<section id="recommendation">``).

    Uses paragraphs and lists only (no table rows), so it can sit above a variant table.

    Args:
        rec: Dict from `recommend` or `recommend_rows`.

    Returns:
        String of HTML.

    Example:
        >>> rec = recommend_rows([], reference=None)
        >>> recommendation_html(rec).startswith('<section id="recommendation">')
        True
    """
    import html

    parts = ['<section id="recommendation"><h2>What to ship</h2>']
    parts.append(f'<p class="ship"><b>{html.escape(str(rec["summary"]))}</b></p>')
    if rec.get("smallest") or rec.get("fastest"):
        parts.append("<ul>")
        for label in ("smallest", "fastest"):
            name, _, rest = _choice(label, rec.get(label)).partition(": ")
            parts.append(f"<li><b>{html.escape(name)}</b>: {html.escape(rest)}</li>")
        parts.append("</ul>")
    why = rec.get("why_not") or {}
    if why:
        parts.append("<p>Not chosen:</p><ul>")
        parts += [
            f"<li><code>{html.escape(n)}</code>: {html.escape(r)}</li>" for n, r in why.items()
        ]
        parts.append("</ul>")
    parts.append("</section>")
    return "".join(parts)
