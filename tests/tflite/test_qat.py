"""A TFMOT quantization-aware model keeps its trained ranges: it is not re-calibrated."""

from __future__ import annotations

import numpy as np
import pytest

from keras_opt.tflite import export
from keras_opt.tflite._convert import is_qat_model
from tests.conftest import build_sequential_cnn, compile_classifier


@pytest.mark.tf_keras_only
def test_qat_model_exports_int8_without_calibration(digits, tmp_path):
    import tensorflow_model_optimization as tfmot

    x_train, y_train, x_test, y_test = digits
    model = compile_classifier(tfmot.quantization.keras.quantize_model(build_sequential_cnn()))
    model.fit(x_train[:800], y_train[:800], batch_size=32, epochs=2, verbose=0)
    assert is_qat_model(model)
    result = export(
        model,
        tmp_path,
        variants=["int8", "dynamic_int8", "int8_only"],
        eval_data=(x_test, y_test),
        isolation="none",
        runs=3,
    )  # no representative_data: the QAT ranges are used
    assert result.failed == {}
    # The QAT graph carries its quantization: dynamic_int8 comes out as the same int8
    # file, and is marked so instead of being listed as another model.
    for twin in ("dynamic_int8",):
        assert result[twin]["same_file_as"] == "int8"
        assert result[twin]["sha256"] == result["int8"]["sha256"]
        assert result[twin]["size_bytes"] == result["int8"]["size_bytes"]
        assert result[twin]["latency_ms"] == result["int8"]["latency_ms"]
        assert f"`{twin}.tflite` is byte-identical" in (tmp_path / "report.md").read_text()
        assert (tmp_path / f"{twin}.tflite").read_bytes() == (tmp_path / "int8.tflite").read_bytes()
    assert result["int8_only"]["same_file_as"] is None
    assert result.recommendation["why_not"]["dynamic_int8"].startswith("same file as int8")
    assert result["int8"]["converter"]["calibrated"] is False
    assert result["int8"]["inputs"][0]["dtype"] == "float32"
    entry = result["int8_only"]
    assert entry["error"] is None
    assert entry["converter"]["calibrated"] is False
    assert entry["converter"]["qat_ranges"] is True
    assert result.manifest["model"]["qat"] is True
    assert entry["inputs"][0]["dtype"] == "int8"
    assert entry["ops"]["dequantize_count"] == 0
    keras_acc = float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test))
    assert abs(entry["metrics"]["accuracy"] - keras_acc) <= 0.01


@pytest.mark.keras3_only
def test_plain_keras3_model_is_not_qat(residual_cnn):
    assert not is_qat_model(residual_cnn)
