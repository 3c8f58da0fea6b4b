"""The one plain-text table formatter of the tflite reports and the CLI."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """Align ``rows`` under ``header``: the first ``left`` columns left, the others right.

    A row shorter than the header ends in a free cell: text such as ``same file
    as int8`` or a failure that spans the remaining columns. It is written as it
    is, left-aligned, and does not widen its column. Trailing spaces are removed.

    Args:
        header: Sequence of strings. The column titles.
        rows: Sequence of rows, each a sequence of strings (at most one per column).
        left: Integer >= 0. How many leading columns are left-aligned.

    Returns:
        String, one line per row (header first), columns separated by two spaces.

    Example:
        >>> print(format_table(["variant", "size"], [["int8", "1,200"], ["float16", "2,048"],
        ...                    ["dynamic_int8", "same file as int8"]]))
        variant        size
        int8          1,200
        float16       2,048
        dynamic_int8  same file as int8
    """
    table = [list(header)] + [list(row) for row in rows]
    for row in table:
        if len(row) > len(header):
            raise ValueError(
                f"Each row must have at most {len(header)} cells (one per column). "
                f"Received: row={row!r}"
            )
    widths = [0] * len(header)
    for row in table:
        measured = row if len(row) == len(header) else row[:-1]
        for i, cell in enumerate(measured):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in table:
        aligned = row if len(row) == len(header) else row[:-1]
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(aligned, widths, strict=False))
        ]
        if row and len(row) < len(header):
            cells.append(row[-1])
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
