"""`ExportResult`: what `keras_opt.tflite.export` wrote and measured, also as a table."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from keras_opt.tflite import report as _report

__all__ = ["ExportResult"]


@dataclasses.dataclass
class ExportResult:
    """What `export` wrote and measured.

    Attributes:
        out_dir: String. The export folder.
        manifest: Dict. The content of ``manifest.json``.
        manifest_path: String.
        report_path: String. ``report.md``.
        plot_path: String or None. The size/latency/accuracy PNG.

    Example:
        >>> result = keras_opt.tflite.export(model, "tflite_models/m")  # doctest: +SKIP
        >>> result["int8"]["size_bytes"], result.failed  # doctest: +SKIP
        (17488, {})
    """

    out_dir: str
    manifest: dict[str, Any]
    manifest_path: str
    report_path: str
    plot_path: str | None

    @property
    def variants(self) -> list[dict[str, Any]]:
        """The per-variant entries of the manifest."""
        return list(self.manifest["variants"])

    @property
    def failed(self) -> dict[str, str]:
        """Variant name -> converter error, for variants that did not convert."""
        return {v["name"]: v["error"] for v in self.variants if v["error"]}

    def __getitem__(self, name: str) -> dict[str, Any]:
        for v in self.variants:
            if v["name"] == name:
                return v
        raise KeyError(f"No variant {name!r}; exported: {[v['name'] for v in self.variants]}")

    def path(self, name: str) -> str | None:
        """Absolute path of a variant's ``.tflite`` file (None if it failed)."""
        f = self[name]["file"]
        return os.path.join(self.out_dir, f) if f else None

    def table(self) -> list[dict[str, Any]]:
        """One row (a dict) per variant: size, gzip size, latency, metric, parity, error.

        ``pandas.DataFrame(result.table())`` gives a data frame.
        """
        return _report.table_rows(self.manifest)

    def format_table(self) -> str:
        """The table as aligned text, for terminals and logs."""
        metric = self.manifest.get("metric_name", "metric")
        head = ["variant", "size", "gzip", "p50 ms", "mean ms", metric, "max|diff|", "top1"]
        lines = [head]
        for r in self.table():
            if r["error"]:
                lines.append([r["name"], "FAILED", "", "", "", "", "", ""])
                continue

            def f(v: Any, spec: str) -> str:
                return "-" if v is None else format(v, spec)

            lines.append(
                [
                    r["name"],
                    str(r["size_bytes"]),
                    str(r["gzip_bytes"]),
                    f(r["latency_p50_ms"], ".4f"),
                    f(r["latency_mean_ms"], ".4f"),
                    f(r["metric"], ".4f"),
                    f(r["max_abs_diff"], ".3g"),
                    f(r["top1_agreement"], ".4f"),
                ]
            )
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        return "\n".join(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=False))
            )
            for row in lines
        )

    def __str__(self) -> str:
        return f"ExportResult({self.out_dir!r})\n{self.format_table()}"
