"""`VariantResult` (one manifest entry), the public surface, the one table formatter."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest

import keras_opt.tflite as tflite
from keras_opt.tflite import ExportResult, VariantResult
from keras_opt.tflite._result import OPTIONAL_FIELDS, REQUIRED_FIELDS
from keras_opt.tflite._table import format_table

MEASURED = {
    "name": "int8",
    "file": "int8.tflite",
    "error": None,
    "same_file_as": None,
    "batch_size": None,
    "input_shapes": [[-1, 8, 8, 1]],
    "size_bytes": 17488,
    "gzip_bytes": 12001,
    "sha256": "ab" * 32,
    "latency_ms": {"mean": 0.02, "std": 0.001, "p50": 0.019, "p90": 0.022, "p99": 0.03},
    "threads": 1,
    "delegate": "XNNPACK",
    "metrics": {"accuracy": 0.97},
    "parity": {"max_abs_diff": 0.01, "top1_agreement": 0.99},
    "ops": {"builtin_only": True},
    "inputs": [{"name": "image"}],
    "outputs": [{"name": "head"}],
    "latency": {"runs": 20},
    "quant_debug": {"worst_layers": [{"layer": "fc"}]},
    "converter": {"calibrated": True},
}


def test_functions_no_longer_shadow_their_modules():
    assert callable(tflite.export)
    assert callable(tflite.benchmark)
    for module in ("export", "benchmark", "convert", "result", "variants", "data"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"keras_opt.tflite.{module}")
    assert "VariantResult" in tflite.__all__


def test_a_manifest_entry_round_trips_unchanged_in_keys_and_order():
    entry = VariantResult.from_dict(MEASURED)
    assert entry.to_dict() == MEASURED
    assert list(entry.to_dict()) == list(MEASURED)
    assert json.loads(json.dumps(entry.to_dict())) == MEASURED
    assert VariantResult.from_dict(entry.to_dict()) == entry


def test_every_required_field_is_written_and_unset_optional_ones_are_not():
    failed = VariantResult("int16x8", error="boom", converter={"calibrated": True})
    assert list(failed.to_dict()) == [*REQUIRED_FIELDS, "converter"]
    assert failed.to_dict()["size_bytes"] is None
    assert set(OPTIONAL_FIELDS).isdisjoint(REQUIRED_FIELDS)
    assert {f.name for f in dataclasses.fields(VariantResult)} == {
        *REQUIRED_FIELDS,
        *OPTIONAL_FIELDS,
        "extra",
    }


def test_mapping_reads_are_a_compatibility_path_over_the_manifest_keys():
    entry = VariantResult.from_dict(MEASURED)
    assert entry["metrics"]["accuracy"] == entry.metrics["accuracy"] == 0.97
    assert entry.get("quant_debug") == MEASURED["quant_debug"]
    assert entry.get("mixed") is None
    assert "mixed" not in entry
    assert entry["error"] is None
    assert "error" in entry  # required: present even when None
    with pytest.raises(KeyError):
        entry["mixed"]
    assert dict(entry) == MEASURED
    assert len(entry) == len(MEASURED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.size_bytes = 1  # type: ignore[misc]


def test_unknown_keys_of_a_manifest_are_kept():
    entry = VariantResult.from_dict({"name": "float32", "future_field": [1, 2]})
    assert entry.extra == {"future_field": [1, 2]}
    assert entry["future_field"] == [1, 2]
    assert entry.to_dict()["future_field"] == [1, 2]


@pytest.mark.parametrize("bad", [None, [], {"file": "x.tflite"}])
def test_from_dict_rejects_what_is_not_an_entry(bad):
    with pytest.raises(TypeError, match="entry"):
        VariantResult.from_dict(bad)


def test_export_result_gives_variant_results_from_the_json_manifest(tmp_path):
    manifest = {
        "metric_name": "accuracy",
        "variants": [MEASURED, {**VariantResult("float16", error="boom").to_dict()}],
        "left_out": [{"name": "mixed", "reason": "left out for a reason"}],
    }
    result = ExportResult(str(tmp_path), manifest, "m.json", "r.md", None)
    assert isinstance(result["int8"], VariantResult)
    assert result["int8"].size_bytes == 17488
    assert result["int8"]["size_bytes"] == 17488  # the README's mapping-style read
    assert [v.name for v in result.variants] == ["int8", "float16"]
    assert result.failed == {"float16": "boom"}
    assert result.path("int8") == str(tmp_path / "int8.tflite")
    assert result.path("float16") is None
    with pytest.raises(KeyError, match="left out for a reason"):
        result["mixed"]


def test_format_table_aligns_and_lets_a_short_row_span():
    text = format_table(
        ["model", "variant", "size", "p50 ms"],
        [["base", "int8", "2,048", "0.0100"], ["base", "float16", "same file as int8"]],
        left=2,
    )
    assert text.splitlines() == [
        "model  variant   size  p50 ms",
        "base   int8     2,048  0.0100",
        "base   float16  same file as int8",
    ]


def test_format_table_rejects_rows_wider_than_the_header():
    with pytest.raises(ValueError, match="at most 1 cells"):
        format_table(["a"], [["x", "y"]])


@pytest.mark.slow
def test_on_variant_gets_the_entries_that_manifest_json_holds(tiny_dense, tiny_data, tmp_path):
    x, y = tiny_data
    seen: list[VariantResult] = []
    result = tflite.export(
        tiny_dense,
        tmp_path,
        variants=["float32", "dynamic_int8"],
        eval_data=(x, y),
        isolation="none",
        runs=2,
        warmup=0,
        on_variant=seen.append,
    )
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["format"] == "keras_opt.tflite/1"
    assert [v.to_dict() for v in seen] == on_disk["variants"]
    assert [list(v) for v in on_disk["variants"]] == [list(v.to_dict()) for v in seen]
    assert list(on_disk["variants"][0])[: len(REQUIRED_FIELDS)] == list(REQUIRED_FIELDS)
    assert result["float32"] == seen[0]
    assert result["float32"].metrics == result["float32"]["metrics"]
