"""What `keras_opt.tflite.export` wrote and measured: `VariantResult` per variant, `ExportResult`.

`VariantResult` is one entry of ``manifest.json``'s ``variants`` list;
`VariantResult.to_dict` is its one serialisation (the manifest's format,
``keras_opt.tflite/1``) and `VariantResult.from_dict` reads it back.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any

from keras_opt import _validation as V

__all__ = ["VariantResult", "ExportResult", "variant_results"]

#: Fields every manifest entry has, in this order (None when not measured).
REQUIRED_FIELDS = (
    "name",
    "file",
    "error",
    "same_file_as",
    "batch_size",
    "input_shapes",
    "size_bytes",
    "gzip_bytes",
    "sha256",
    "latency_ms",
    "threads",
    "delegate",
    "metrics",
    "parity",
    "ops",
)
#: Fields a manifest entry has only when they apply, in this order after the required ones.
OPTIONAL_FIELDS = (
    "batch_note",
    "inputs",
    "outputs",
    "latency",
    "runtime_error",
    "quant_debug",
    "mixed",
    "converter",
    "left_out",
)


@dataclasses.dataclass(frozen=True)
class VariantResult(Mapping[str, Any]):
    """One variant of an export, as measured from its ``.tflite`` file.

    Read it by attribute (``entry.size_bytes``). For code written against
    the manifest's JSON, mapping-style reads keep working as a compatibility
    path: ``entry["metrics"]``, ``entry.get("quant_debug")``, ``"mixed" in
    entry`` and ``dict(entry)`` see exactly the keys of the manifest entry
    (`to_dict`). The object is read-only.

    Attributes:
        name: String. The variant (``"int8"``, ``"aeq:<recipe>"``, ...).
        file: String or None. The ``.tflite`` file name in the export folder
            (None when it failed or was left out).
        error: String or None. The converter's error.
        same_file_as: String or None. The earlier variant whose file is
            byte-identical (same sha256); its numbers are copied.
        batch_size: Integer or None (dynamic). The batch axis of the file.
        input_shapes: List of shapes read from the file (-1: dynamic axis).
        size_bytes: Integer. File size.
        gzip_bytes: Integer. Gzipped size (level 9).
        sha256: String. Hex digest of the file.
        latency_ms: Dict ``mean``, ``std``, ``p50``, ``p90``, ``p99`` (LiteRT).
        threads: Integer. Interpreter threads of the measurement.
        delegate: String. The delegate LiteRT applied (e.g. XNNPACK).
        metrics: Dict metric name -> value on the eval data (``{}`` without labels).
        parity: Dict of agreement with Keras (``max_abs_diff``, ``top1_agreement``, ...).
        ops: Dict of what the file contains (op counts, kernel types, ...).
        batch_note: String or None. Why the batch size differs from the default.
        inputs: List of the interpreter's input details.
        outputs: List of the interpreter's output details.
        latency: Dict. The full `LatencyResult` of the latency runs.
        runtime_error: String or None. Why LiteRT cannot run the file.
        quant_debug: Dict or None. The QuantizationDebugger's worst layers.
        mixed: Dict or None. The layers the ``mixed`` variant keeps in float, and why.
        converter: Dict. The converter settings used.
        left_out: String or None. Why the variant was left out (only in
            ``on_variant`` callbacks; the manifest lists those under ``left_out``).
        extra: Dict. Keys of a manifest entry this version does not know, kept as read.

    Example:
        >>> entry = VariantResult.from_dict({"name": "int8", "size_bytes": 17488,
        ...                                  "metrics": {"accuracy": 0.97}})
        >>> entry.size_bytes, entry.metrics["accuracy"], entry["metrics"]
        (17488, 0.97, {'accuracy': 0.97})
        >>> VariantResult.from_dict(entry.to_dict()) == entry
        True
    """

    name: str
    file: str | None = None
    error: str | None = None
    same_file_as: str | None = None
    batch_size: int | None = None
    input_shapes: list[list[int]] | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    sha256: str | None = None
    latency_ms: dict[str, float] | None = None
    threads: int | None = None
    delegate: str | None = None
    metrics: dict[str, float] | None = None
    parity: dict[str, Any] | None = None
    ops: dict[str, Any] | None = None
    batch_note: str | None = None
    inputs: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    latency: dict[str, Any] | None = None
    runtime_error: str | None = None
    quant_debug: dict[str, Any] | None = None
    mixed: dict[str, Any] | None = None
    converter: dict[str, Any] | None = None
    left_out: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry: every required field, then the optional ones that are set.

        Returns:
            Dict (JSON-serialisable when the values are), in the manifest's key order.

        Example:
            >>> list(VariantResult("int8", error="boom").to_dict())[:4]
            ['name', 'file', 'error', 'same_file_as']
        """
        out = {k: getattr(self, k) for k in REQUIRED_FIELDS}
        out.update({k: getattr(self, k) for k in OPTIONAL_FIELDS if getattr(self, k) is not None})
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> VariantResult:
        """Read a manifest entry (e.g. from ``manifest.json`` on disk).

        Args:
            entry: Mapping with at least ``name``; unknown keys go to ``extra``.

        Returns:
            `VariantResult`.

        Raises:
            TypeError: if ``entry`` is not a mapping with a ``name``.

        Example:
            >>> VariantResult.from_dict({"name": "float16", "file": "float16.tflite"}).file
            'float16.tflite'
        """
        if isinstance(entry, VariantResult):
            return entry
        if not isinstance(entry, Mapping) or "name" not in entry:
            V.fail("entry", "a manifest entry (a mapping with 'name')", entry, exc=TypeError)
        known = {k: entry[k] for k in _FIELDS if k in entry}
        extra = {k: entry[k] for k in entry if k not in _FIELDS}
        return cls(**known, extra=extra)

    # Mapping-style reads: the compatibility path for code written against the JSON.
    def __getitem__(self, key: str) -> Any:
        if key in REQUIRED_FIELDS:
            return getattr(self, key)
        if key in OPTIONAL_FIELDS and getattr(self, key) is not None:
            return getattr(self, key)
        if key in self.extra:
            return self.extra[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


_FIELDS = frozenset((*REQUIRED_FIELDS, *OPTIONAL_FIELDS))


def variant_results(manifest: Mapping[str, Any]) -> list[VariantResult]:
    """The ``variants`` of a manifest (dict entries or `VariantResult`) as `VariantResult`.

    Args:
        manifest: Mapping with ``variants``: an export's manifest.

    Returns:
        List of `VariantResult`, in the manifest's order.

    Example:
        >>> [v.name for v in variant_results({"variants": [{"name": "float32"}]})]
        ['float32']
    """
    return [VariantResult.from_dict(v) for v in manifest.get("variants") or []]


@dataclasses.dataclass
class ExportResult:
    """What `export` wrote and measured.

    Attributes:
        out_dir: String. The export folder.
        manifest: Dict. The content of ``manifest.json`` (its ``variants`` are
            plain dicts, as on disk; `variants` and ``result[name]`` give them as
            `VariantResult`).
        manifest_path: String.
        report_path: String. ``report.md``.
        plot_path: String or None. The size/latency/accuracy PNG.

    Example:
        >>> result = keras_opt.tflite.export(model, "tflite_models/m")  # doctest: +SKIP
        >>> result["int8"].size_bytes, result.failed  # doctest: +SKIP
        (17488, {})
    """

    out_dir: str
    manifest: dict[str, Any]
    manifest_path: str
    report_path: str
    plot_path: str | None

    @property
    def variants(self) -> list[VariantResult]:
        """The per-variant entries of the manifest, as `VariantResult`."""
        return variant_results(self.manifest)

    @property
    def failed(self) -> dict[str, str]:
        """Variant name -> converter error, for variants that did not convert."""
        return {v.name: v.error for v in self.variants if v.error}

    @property
    def left_out(self) -> dict[str, str]:
        """Variant name -> why it was left out (e.g. int16x8 of a quantization-aware model)."""
        return {d["name"]: d["reason"] for d in self.manifest.get("left_out") or []}

    def __getitem__(self, name: str) -> VariantResult:
        """The `VariantResult` of variant ``name`` (``result["int8"].size_bytes``).

        Raises:
            KeyError: for a variant that was left out (with the reason) or not exported.
        """
        variants = self.variants
        for v in variants:
            if v.name == name:
                return v
        if name in self.left_out:
            raise KeyError(f"Variant {name!r} was {self.left_out[name]}")
        raise KeyError(f"No variant {name!r}; exported: {[v.name for v in variants]}")

    def path(self, name: str) -> str | None:
        """Absolute path of a variant's ``.tflite`` file (None if it failed)."""
        f = self[name].file
        return os.path.join(self.out_dir, f) if f else None

    def table(self) -> list[dict[str, Any]]:
        """One row (a dict) per variant: size, gzip size, latency, metric, parity, error.

        ``pandas.DataFrame(result.table())`` gives a data frame.
        """
        from keras_opt.tflite._report import table_rows

        return table_rows(self.manifest)

    @property
    def recommendation(self) -> dict[str, Any]:
        """What to ship: the smallest and the fastest variant within the accuracy budget.

        Computed at export time with its ``accuracy_budget`` (older manifests:
        recomputed with the default budget, 0.01).
        """
        from keras_opt.tflite._recommend import recommend

        return self.manifest.get("recommendation") or recommend(self.manifest)

    def format_recommendation(self) -> str:
        """The recommendation as text: summary, smallest, fastest, why not the others."""
        from keras_opt.tflite._recommend import recommendation_lines

        return "\n".join(recommendation_lines(self.recommendation))

    def format_table(self) -> str:
        """The table as aligned text, for terminals and logs.

        A variant whose file is byte-identical to an earlier one is shown as
        ``same file as <name>`` instead of repeating its numbers.
        """
        from keras_opt.tflite._table import format_table

        metric = self.manifest.get("metric_name", "metric")
        head = ["variant", "batch", "size", "gzip", "p50 ms", "mean ms", metric, "max|diff|",
                "top1"]  # fmt: skip
        lines = []
        for r in self.table():
            batch = "dynamic" if r["batch_size"] is None else str(r["batch_size"])
            if r["error"]:
                lines.append([r["name"], "", "FAILED", "", "", "", "", "", ""])
            elif r["same_file_as"]:
                lines.append([r["name"], batch, f"same file as {r['same_file_as']}"])
            else:
                lines.append(
                    [
                        r["name"],
                        batch,
                        str(r["size_bytes"]),
                        str(r["gzip_bytes"]),
                        _num(r["latency_p50_ms"], ".4f"),
                        _num(r["latency_mean_ms"], ".4f"),
                        _num(r["metric"], ".4f"),
                        _num(r["max_abs_diff"], ".3g"),
                        _num(r["top1_agreement"], ".4f"),
                    ]
                )
        return format_table(head, lines)

    def __str__(self) -> str:
        return f"ExportResult({self.out_dir!r})\n{self.format_table()}"


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)
