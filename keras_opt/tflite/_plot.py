"""Size vs latency scatter shared by the export report and the comparison report.

Both axes are logarithmic (one slow variant must not squeeze the others into a
corner), variants that are the same file share one point and one label, labels
are placed so that they do not overlap each other or the points, and the Pareto
front (no other variant is both smaller and faster) is drawn as a step line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["pareto_front", "size_latency_plot"]

# Label offsets tried in turn (points), nearest first.
_OFFSETS = [
    (dx * r, dy * r)
    for r in (6, 14, 24, 36)
    for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (lower is better).

    Args:
        points: Sequence of ``(size, latency)`` pairs.

    Returns:
        Indices of the front, sorted by size.

    Example:
        >>> pareto_front([(1, 5), (2, 2), (3, 3), (4, 1)])
        [0, 1, 3]
    """
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 <= x and y2 <= y) and (x2 < x or y2 < y)
            for j, (x2, y2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


def _place_labels(fig: Any, ax: Any, xs: list[float], ys: list[float], labels: list[str]) -> None:
    """Annotate each point where its label overlaps no other label and no point."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    marks = [to_px((x, y)) for x, y in zip(xs, ys, strict=True)]
    taken: list[Any] = []
    dpi_scale = fig.dpi / 72.0
    axes_box = ax.get_window_extent(renderer)
    order = sorted(range(len(xs)), key=lambda i: (xs[i], ys[i]))
    for i in order:
        best = None
        for dx, dy in _OFFSETS:
            ann = ax.annotate(
                labels[i],
                (xs[i], ys[i]),
                textcoords="offset points",
                xytext=(dx, dy),
                ha="left" if dx >= 0 else "right",
                va="bottom" if dy >= 0 else "top",
                fontsize=7,
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if abs(dx) > 6 else None,
            )
            box = ann.get_window_extent(renderer).expanded(1.05, 1.15)
            hits_label = any(box.overlaps(t) for t in taken)
            hits_mark = any(
                box.x0 - 4 * dpi_scale <= mx <= box.x1 + 4 * dpi_scale
                and box.y0 - 4 * dpi_scale <= my <= box.y1 + 4 * dpi_scale
                for j, (mx, my) in enumerate(marks)
                if j != i
            )
            inside = axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 + 40 * dpi_scale
            if not hits_label and not hits_mark and inside:
                best = (ann, box)
                break
            ann.remove()
        if best is None:  # crowded: take the first offset anyway
            dx, dy = _OFFSETS[0]
            ann = ax.annotate(
                labels[i], (xs[i], ys[i]), textcoords="offset points", xytext=(dx, dy), fontsize=7
            )
            best = (ann, ann.get_window_extent(renderer))
        taken.append(best[1])


def size_latency_plot(
    points: Sequence[dict[str, Any]],
    *,
    title: str,
    metric_name: str = "accuracy",
    groups: Sequence[str] | None = None,
) -> Any:
    """Build the size/latency figure.

    Args:
        points: Dicts with ``label``, ``size_bytes``, ``latency_p50_ms``, ``metric``
            (may be None) and optionally ``group`` (marker per group).
        title: String. Figure title.
        metric_name: String. Colorbar label.
        groups: Group names, in legend order (None: one group).

    Returns:
        A ``matplotlib.figure.Figure`` (not saved).
    """
    from keras_opt._plotting import new_figure

    fig = new_figure((7.5, 4.8))
    ax = fig.subplots()
    xs = [p["size_bytes"] / 1024 for p in points]
    ys = [p["latency_p50_ms"] for p in points]
    metrics = [p["metric"] for p in points if p.get("metric") is not None]
    lo, hi = (min(metrics), max(metrics)) if metrics else (0.0, 1.0)
    markers = "osD^v<>"
    groups = list(groups or [None])  # type: ignore[list-item]
    sc = None
    for g, group in enumerate(groups):
        idx = [i for i, p in enumerate(points) if p.get("group") == group]
        if not idx:
            continue
        colored = bool(metrics)
        sc = ax.scatter(
            [xs[i] for i in idx],
            [ys[i] for i in idx],
            c=[points[i]["metric"] if points[i].get("metric") is not None else lo for i in idx]
            if colored
            else None,
            cmap="viridis" if colored else None,
            vmin=lo if colored else None,
            vmax=(hi if hi > lo else lo + 1e-6) if colored else None,
            marker=markers[g % len(markers)],
            s=60,
            edgecolors="black",
            linewidths=0.6,
            label=group,
            zorder=3,
        )
    front = pareto_front(list(zip(xs, ys, strict=True)))
    if len(front) > 1:
        fx = [xs[i] for i in front]
        fy = [ys[i] for i in front]
        ax.step(fx, fy, where="post", color="tab:red", lw=1.2, alpha=0.7, zorder=2,
                label="Pareto front (smaller and faster)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Room for labels beyond the extreme points.
    ax.margins(x=0.25, y=0.25)
    if metrics and sc is not None:
        fig.colorbar(sc, ax=ax, label=metric_name)
    ax.set_xlabel("size (KiB, log scale)")
    ax.set_ylabel("p50 latency (ms, log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.2)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    _place_labels(fig, ax, xs, ys, [p["label"] for p in points])
    return fig
