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

    @property
    def left_out(self) -> dict[str, str]:
        """Variant name -> why it was left out (e.g. int16x8 of a quantization-aware model)."""
        return {d["name"]: d["reason"] for d in self.manifest.get("left_out") or []}

    def __getitem__(self, name: str) -> dict[str, Any]:
        for v in self.variants:
            if v["name"] == name:
                return v
        if name in self.left_out:
            raise KeyError(f"Variant {name!r} was {self.left_out[name]}")
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

    @property
    def recommendation(self) -> dict[str, Any]:
        """What to ship: the smallest and the fastest variant within the accuracy budget.

        See `keras_opt.tflite.recommend.recommend`; computed at export time with
        its ``accuracy_budget`` (older manifests: recomputed with the default).
        """
        from keras_opt.tflite.recommend import recommend

        return self.manifest.get("recommendation") or recommend(self.manifest)

    def format_recommendation(self) -> str:
        """The recommendation as text: summary, smallest, fastest, why not the others."""
        from keras_opt.tflite.recommend import recommendation_lines

        return "\n".join(recommendation_lines(self.recommendation))

    def format_table(self) -> str:
        """The table as aligned text, for terminals and logs.

        A variant whose file is byte-identical to an earlier one is shown as
        ``same file as <name>`` instead of repeating its numbers.
        """
        metric = self.manifest.get("metric_name", "metric")
        head = ["variant", "batch", "size", "gzip", "p50 ms", "mean ms", metric, "max|diff|",
                "top1"]  # fmt: skip
        lines = [head]
        for r in self.table():
            batch = "dynamic" if r["batch_size"] is None else str(r["batch_size"])
            if r["error"]:
                lines.append([r["name"], "", "FAILED", "", "", "", "", "", ""])
                continue
            if r["same_file_as"]:
                lines.append([r["name"], batch, f"same file as {r['same_file_as']}"] + [""] * 6)
                continue

            def f(v: Any, spec: str) -> str:
                return "-" if v is None else format(v, spec)

            lines.append(
                [
                    r["name"],
                    batch,
                    str(r["size_bytes"]),
                    str(r["gzip_bytes"]),
                    f(r["latency_p50_ms"], ".4f"),
                    f(r["latency_mean_ms"], ".4f"),
                    f(r["metric"], ".4f"),
                    f(r["max_abs_diff"], ".3g"),
                    f(r["top1_agreement"], ".4f"),
                ]
            )
        spans = {i for i, row in enumerate(lines) if row[2].startswith("same file as")}
        widths = [
            max(len(row[i]) for j, row in enumerate(lines) if not (i == 2 and j in spans))
            for i in range(len(head))
        ]
        out = []
        for j, row in enumerate(lines):
            if j in spans:
                out.append(f"{row[0].ljust(widths[0])}  {row[1].rjust(widths[1])}  {row[2]}")
                continue
            out.append(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=False))
                ).rstrip()
            )
        return "\n".join(out)

    def __str__(self) -> str:
        return f"ExportResult({self.out_dir!r})\n{self.format_table()}"
