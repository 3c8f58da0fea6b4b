"""End-to-end export of the residual CNN: accuracy, sizes, manifest, inspection."""

from __future__ import annotations

import gzip
import hashlib
import json
import os

import numpy as np
import pytest

from keras_opt.tflite._variants import DEFAULT_VARIANTS as VARIANTS

REQUIRED_FIELDS = (
    "name",
    "file",
    "size_bytes",
    "gzip_bytes",
    "sha256",
    "latency_ms",
    "threads",
    "metrics",
    "parity",
    "ops",
    "error",
)


def test_every_variant_converts(exported):
    assert exported.failed == {}
    assert [v["name"] for v in exported.variants] == list(VARIANTS)
    for name in VARIANTS:
        assert os.path.isfile(exported.path(name))


def test_int8_accuracy_within_one_point_of_keras(exported, trained_cnn, digits):
    _, _, x_test, y_test = digits
    keras_acc = float(np.mean(trained_cnn.predict(x_test, verbose=0).argmax(-1) == y_test))
    assert keras_acc > 0.9
    assert exported.manifest["keras_metrics"]["accuracy"] == pytest.approx(keras_acc)
    for name in ("int8", "int8_only", "int16x8", "dynamic_int8"):
        assert abs(exported[name]["metrics"]["accuracy"] - keras_acc) <= 0.01, name


def test_float_variants_match_keras_outputs(exported):
    assert exported["float32"]["parity"]["max_abs_diff"] < 1e-4
    assert exported["float32"]["parity"]["top1_agreement"] == 1.0
    assert exported["float16"]["parity"]["max_abs_diff"] < 1e-2
    assert exported["int8"]["parity"]["top1_agreement"] >= 0.97


def test_size_ratios_against_float32(exported):
    size = {v["name"]: v["size_bytes"] for v in exported.variants}
    weights = {v["name"]: v["ops"]["weight_bytes"] for v in exported.variants}
    # Constant data: float16 halves it, int8 quarters it (int32 biases keep it a bit above).
    assert weights["float16"] / weights["float32"] == pytest.approx(0.5, abs=0.03)
    assert weights["int8"] / weights["float32"] == pytest.approx(0.25, abs=0.04)
    # Whole files carry ~4 KB of graph/metadata, which weighs on a 20 KB model.
    assert 0.45 <= size["float16"] / size["float32"] <= 0.7
    assert 0.2 <= size["int8"] / size["float32"] <= 0.5


def test_manifest_has_every_field(exported):
    with open(exported.manifest_path) as f:
        manifest = json.load(f)
    assert manifest == json.loads(json.dumps(exported.manifest))
    for key in ("model", "converter", "versions", "benchmark", "variants", "keras_metrics"):
        assert key in manifest
    assert manifest["versions"]["tensorflow"].startswith("2.")
    assert manifest["versions"]["ai-edge-litert"]
    for v in manifest["variants"]:
        for key in REQUIRED_FIELDS:
            assert key in v, (v["name"], key)
        assert v["error"] is None
        assert set(v["latency_ms"]) == {"mean", "std", "p50", "p90", "p99"}
        lat = v["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert v["threads"] == 1
        assert v["latency"]["runs"] == 20
        assert v["latency"]["warmup"] == 3
        assert v["latency"]["init_ms"] > 0
        assert v["latency"]["first_ms"] > 0
        assert v["converter"]["supported_ops"][0].startswith(("TFLITE", "EXPERIMENTAL"))
        for detail in v["inputs"] + v["outputs"]:
            assert {"name", "shape", "dtype", "scale", "zero_point"} <= set(detail)
        assert v["inputs"][0]["shape"] == [-1, 8, 8, 1]


def test_sizes_and_hash_are_measured_from_the_file(exported):
    for v in exported.variants:
        with open(os.path.join(exported.out_dir, v["file"]), "rb") as f:
            data = f.read()
        assert v["size_bytes"] == len(data)
        assert v["sha256"] == hashlib.sha256(data).hexdigest()
        assert v["gzip_bytes"] == len(gzip.compress(data, compresslevel=9, mtime=0))


def test_inspection_of_quantized_variants(exported):
    f32, int8, only = exported["float32"], exported["int8"], exported["int8_only"]
    assert f32["ops"]["int8_tensors"] == 0
    assert f32["ops"]["builtin_only"]
    assert f32["inputs"][0]["dtype"] == "float32"
    assert f32["inputs"][0]["scale"] == 0.0
    assert int8["ops"]["int8_tensors"] > 0
    assert int8["ops"]["used"]["QUANTIZE"] >= 1  # float input quantized inside the model
    assert only["ops"]["dequantize_count"] == 0
    assert only["inputs"][0]["dtype"] == "int8"
    assert only["outputs"][0]["dtype"] == "int8"
    # inputs are digits in [0, 1]: the calibrated input range maps 1/255 per step, zp -128
    assert only["inputs"][0]["scale"] == pytest.approx(1 / 255, rel=1e-3)
    assert only["inputs"][0]["zero_point"] == -128
    assert "CONV_2D" in only["ops"]["used"]
    assert "ADD" in only["ops"]["used"]
    assert only["converter"]["calibrated"] is True
    assert exported["dynamic_int8"]["converter"]["calibrated"] is False


def test_quant_debug_names_the_worst_layers(exported):
    debug = exported["int8"]["quant_debug"]
    worst = debug["worst_layers"]
    assert 1 <= len(worst) <= 5
    errors = [w["rmse_over_scale"] for w in worst]
    assert errors == sorted(errors, reverse=True)
    assert all(np.isfinite(errors))
    assert errors[0] > 0
    assert any(w["op"] == "CONV_2D" for w in debug["layers"])


def test_result_table_report_and_plot(exported):
    rows = exported.table()
    assert [r["name"] for r in rows] == list(VARIANTS)
    assert rows[3]["metric"] == exported["int8"]["metrics"]["accuracy"]
    text = exported.format_table()
    assert "int16x8" in text
    assert "accuracy" in text
    with open(exported.report_path) as f:
        report = f.read()
    for name in VARIANTS:
        assert f"| {name} |" in report
    assert "largest quantization error" in report
    with open(exported.plot_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(exported.out_dir) if p.startswith(".tmp-")]


def test_denylisted_layers_stay_float_on_reexport(exported, trained_cnn, digits, tmp_path):
    from keras_opt.tflite import export

    x_train, _, x_test, y_test = digits
    worst = exported["int8"]["quant_debug"]["worst_layers"][0]["layer"]
    result = export(
        trained_cnn,
        tmp_path,
        variants=["int8"],
        representative_data=x_train[:100],
        eval_data=(x_test, y_test),
        denylist=[worst, "FULLY_CONNECTED"],
        isolation="none",
        runs=3,
    )
    entry = result["int8"]
    assert entry["error"] is None
    assert entry["converter"]["denylist"] == [worst, "FULLY_CONNECTED"]
    base = exported["int8"]["ops"]
    assert entry["ops"]["int8_tensors"] < base["int8_tensors"]
    assert entry["ops"]["dequantize_count"] > base["dequantize_count"]
    keras_acc = exported.manifest["keras_metrics"]["accuracy"]
    assert abs(entry["metrics"]["accuracy"] - keras_acc) <= 0.01
