"""AI Edge Quantizer variants (int4, int16 activations, any recipe) and the ``mixed`` variant."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from keras_opt.backend import keras
from keras_opt.tflite import VariantResult, export, inspect_tflite
from keras_opt.tflite._variants import resolve_variants
from tests.conftest import build_sequential_cnn, compile_classifier

AEQ_VARIANTS = ["float32", "int8", "int16x8", "int4_weights", "dynamic_int4", "int8_int16act"]


@pytest.fixture(scope="module")
def aeq_exported(trained_cnn, digits, tmp_path_factory):
    x_train, _, x_test, y_test = digits
    out = tmp_path_factory.mktemp("aeq") / "digits"
    return export(
        trained_cnn,
        out,
        representative_data=x_train[:100],
        eval_data=(x_test, y_test),
        variants=AEQ_VARIANTS,
        runs=5,
        warmup=1,
        isolation="none",
    )


def test_aeq_variants_convert_and_are_measured_like_the_others(aeq_exported):
    assert aeq_exported.failed == {}
    keras_acc = aeq_exported.manifest["keras_metrics"]["accuracy"]
    for name in ("int4_weights", "dynamic_int4", "int8_int16act"):
        entry = aeq_exported[name]
        assert entry["file"] == f"{name}.tflite"
        assert entry["size_bytes"] == os.path.getsize(aeq_exported.path(name))
        assert entry["gzip_bytes"] < entry["size_bytes"]
        assert entry["latency_ms"]["p50"] > 0
        assert entry["ops"]["builtin_only"]
        assert entry["metrics"]["accuracy"] >= keras_acc - 0.03, name
        assert entry["parity"]["top1_agreement"] >= 0.95, name
        assert entry["converter"]["engine"] == "aeq"
    assert aeq_exported["int4_weights"]["converter"]["recipe"] == "weight_only_wi4_afp32"
    assert aeq_exported.manifest["versions"]["ai-edge-quantizer"].startswith("0.10.")


def test_int4_kernels_are_read_back_from_the_file(aeq_exported):
    from ai_edge_litert import schema_py_generated as schema

    for name in ("int4_weights", "dynamic_int4"):
        with open(aeq_exported.path(name), "rb") as f:
            content = f.read()
        # Every conv and fully-connected kernel (3 in this CNN) is stored as INT4.
        assert inspect_tflite(content)["kernel_types"] == {"INT4": 3}
        model = schema.Model.GetRootAs(content, 0)
        graph = model.Subgraphs(0)
        int4 = [
            graph.Tensors(t)
            for t in range(graph.TensorsLength())
            if graph.Tensors(t).Type() == schema.TensorType.INT4
        ]
        assert len(int4) == 3
        # Two int4 values per byte: the buffers hold half the kernel's element count.
        for tensor in int4:
            elements = int(np.prod(tensor.ShapeAsNumpy()))
            assert model.Buffers(tensor.Buffer()).DataLength() == (elements + 1) // 2
    assert aeq_exported["int4_weights"]["ops"]["used"]["DEQUANTIZE"] == 3
    assert aeq_exported["int4_weights"]["size_bytes"] < 0.8 * aeq_exported["int8"]["size_bytes"]
    assert inspect_tflite(aeq_exported.path("int8"))["kernel_types"] == {"INT8": 3}


def test_int8_int16act_has_int16_activations_next_to_int16x8(aeq_exported):
    aeq, converter = aeq_exported["int8_int16act"], aeq_exported["int16x8"]
    assert aeq["ops"]["kernel_types"] == {"INT8": 3}
    assert aeq["inputs"][0]["dtype"] == "int16"  # AEQ quantizes the I/O too
    assert aeq["ops"]["tensor_types"].get("INT16", 0) >= 5
    assert converter["ops"]["tensor_types"].get("INT16", 0) >= 5
    assert abs(aeq["metrics"]["accuracy"] - converter["metrics"]["accuracy"]) <= 0.02


def build_outlier_dense(digits):
    """A Dense net whose first kernel has outlier weights on a pixel that is always 0.

    The float model never sees them (pixel 0 of sklearn's digits is 0 in every image),
    but they set the int8 scale of every channel of that kernel, so plain int8 rounds
    its real weights away and loses accuracy; that one layer kept in float fixes it.
    """
    x_train, y_train, _, _ = digits
    flat = x_train.reshape(len(x_train), -1)
    assert flat[:, 0].max() == 0.0
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,), name="pixels")
    h = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
    h = keras.layers.Dense(32, activation="relu", name="hidden2")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(h)
    model = compile_classifier(keras.Model(inputs, outputs, name="outlier"))
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(flat, y_train, epochs=5, batch_size=32, verbose=0)
    kernel, bias = model.get_layer("hidden").get_weights()
    kernel[0, :] = 200.0
    model.get_layer("hidden").set_weights([kernel, bias])
    return model


def test_mixed_meets_its_budget_where_plain_int8_does_not(digits, tmp_path):
    x_train, _, x_test, y_test = digits
    model = build_outlier_dense(digits)
    flat_train, flat_test = x_train.reshape(-1, 64), x_test.reshape(-1, 64)
    result = export(
        model,
        tmp_path,
        representative_data=flat_train[:100],
        eval_data=(flat_test, y_test),
        variants="int8,mixed",
        runs=3,
        warmup=1,
        isolation="none",
    )
    assert result.failed == {}
    reference = result.manifest["keras_metrics"]["accuracy"]
    int8, mixed = result["int8"]["metrics"]["accuracy"], result["mixed"]["metrics"]["accuracy"]
    assert int8 < reference - 0.005  # plain int8 misses the default budget of 0.5 point
    assert mixed >= reference - 0.005
    report = result["mixed"]["mixed"]
    assert report["budget"] == 0.005
    assert report["int8_metric"] < report["threshold"]
    kept = report["kept_float"]
    assert len(kept) == 1
    assert "hidden/" in kept[0]["layer"].replace("_1/", "/")
    assert kept[0]["rank"] == 1
    assert "rank 1 by rmse/scale" in kept[0]["why"]
    assert [t["within_budget"] for t in report["tries"]] == [False, True]
    # One kernel stays float in the file; the other two are int8.
    assert result["mixed"]["ops"]["kernel_types"] == {"FLOAT32": 1, "INT8": 2}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["variants"][1]["mixed"]["kept_float"][0]["layer"] == kept[0]["layer"]
    assert "Kept in float" in (tmp_path / "report.md").read_text()


def test_a_failed_aeq_variant_is_recorded_and_leaves_nothing_half_written(
    tiny_dense, tiny_data, tmp_path, monkeypatch
):
    from ai_edge_quantizer import quantizer

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom in AEQ")

    monkeypatch.setattr(quantizer.Quantizer, "quantize", broken)
    (tmp_path / "int4_weights.tflite").write_bytes(b"stale artifact of an earlier export")
    result = export(
        tiny_dense,
        tmp_path,
        eval_data=tiny_data,
        variants="float32,int4_weights,dynamic_int4",
        runs=2,
        warmup=0,
        isolation="none",
    )
    assert set(result.failed) == {"int4_weights", "dynamic_int4"}
    assert result.failed["int4_weights"].startswith(
        "AI Edge Quantizer (recipe weight_only_wi4_afp32) failed: RuntimeError: boom in AEQ"
    )
    assert result["float32"]["error"] is None
    files = sorted(os.listdir(tmp_path))
    assert "int4_weights.tflite" not in files
    assert "dynamic_int4.tflite" not in files
    assert not [f for f in files if f.endswith(".part") or f.startswith(".tmp")]
    assert result["int4_weights"]["file"] is None
    assert result.recommendation["why_not"]["int4_weights"].startswith("failed to convert")


def test_any_aeq_recipe_by_name(tiny_dense, tiny_data, tmp_path):
    result = export(
        tiny_dense,
        tmp_path,
        representative_data=tiny_data[0],
        variants=["aeq:weight_only_wi8_afp32", "aeq:static_wi8_ai8"],
        runs=2,
        warmup=0,
        isolation="none",
    )
    assert result.failed == {}
    assert os.path.exists(tmp_path / "aeq_weight_only_wi8_afp32.tflite")
    assert result["aeq:weight_only_wi8_afp32"]["ops"]["kernel_types"] == {"INT8": 2}
    assert result["aeq:static_wi8_ai8"]["inputs"][0]["dtype"] == "int8"


def test_bad_recipe_and_variant_names_get_a_clear_error(tiny_dense, tiny_data, tmp_path):
    with pytest.raises(ValueError, match=r"unknown AI Edge Quantizer recipe 'aeq:static_wi8_ai9'"):
        resolve_variants("aeq:static_wi8_ai9")
    with pytest.raises(ValueError, match=r"Did you mean 'aeq:static_wi8_ai8'"):
        resolve_variants("aeq:static_wi8_ai9")
    with pytest.raises(ValueError, match=r"unknown variant 'int4_wieghts'.*'int4_weights'"):
        export(tiny_dense, tmp_path, variants=["int4_wieghts"])
    with pytest.raises(ValueError, match=r"'mixed' .* needs labeled eval data"):
        export(tiny_dense, tmp_path, representative_data=tiny_data[0], variants=["mixed"])
    with pytest.raises(ValueError, match=r"`representative_data` is required.*int8_int16act"):
        export(tiny_dense, tmp_path, variants=["int8_int16act"])
    with pytest.raises(ValueError, match=r"`mixed_budget` must be >= 0"):
        export(tiny_dense, tmp_path, variants=["float32"], mixed_budget=-1)
    assert os.listdir(tmp_path) == []
    from keras_opt.tflite._aeq import quantize_tflite

    with pytest.raises(ValueError, match=r"Unknown AI Edge Quantizer recipe 'int4'"):
        quantize_tflite(b"", "int4")


def test_default_variants_are_the_converters_six():
    names = [v.name for v in resolve_variants(None)]
    assert names == ["float32", "float16", "dynamic_int8", "int8", "int8_only", "int16x8"]


def _qat_model(digits):
    x_train, y_train, _, _ = digits
    from keras_opt.backend import is_tf_keras

    if is_tf_keras():
        import tensorflow_model_optimization as tfmot

        qat = tfmot.quantization.keras.quantize_model(build_sequential_cnn())
    else:
        import keras_opt.optimization as kopt

        base = compile_classifier(build_sequential_cnn())
        base.fit(x_train[:800], y_train[:800], epochs=1, batch_size=32, verbose=0)
        qat = kopt.quantize(base)
    qat = compile_classifier(qat)
    qat.fit(x_train[:800], y_train[:800], epochs=1, batch_size=32, verbose=0)
    return qat


def test_int16x8_of_a_qat_model_is_left_out_with_the_reason(digits, tmp_path):
    """Native QAT under Keras 3, TFMOT under tf_keras: int16x8 cannot carry int8 ranges."""
    from keras_opt.tflite._convert import is_qat_model

    _, _, x_test, y_test = digits
    model = _qat_model(digits)
    assert is_qat_model(model)
    seen: list[VariantResult] = []
    result = export(
        model,
        tmp_path,
        eval_data=(x_test, y_test),
        variants=["int8", "int16x8", "int4_weights", "mixed"],
        runs=2,
        warmup=0,
        isolation="none",
        on_variant=seen.append,
    )
    assert result.failed == {}
    assert all(isinstance(v, VariantResult) for v in seen)
    assert [(v.name, v.left_out is not None) for v in seen] == [
        ("int8", False),
        ("int16x8", True),
        ("int4_weights", True),
        ("mixed", True),
    ]
    assert seen[1].left_out == result.left_out["int16x8"]
    assert seen[1].file is None
    assert result.manifest["model"]["qat"] is True
    assert [v["name"] for v in result.variants] == ["int8"]
    assert result["int8"]["ops"]["kernel_types"] == {"INT8": 2}
    assert set(result.left_out) == {"int16x8", "int4_weights", "mixed"}
    assert "tfl.softmax" in result.left_out["int16x8"]
    assert "Ship int8" in result.left_out["int16x8"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["left_out"][0]["name"] == "int16x8"
    assert (
        "`int16x8` left out for a quantization-aware model" in (tmp_path / "report.md").read_text()
    )
    assert not (tmp_path / "int16x8.tflite").exists()
    with pytest.raises(KeyError, match="left out for a quantization-aware model"):
        result["int16x8"]


def test_int4_variants_give_depthwise_kernels_int8_weights(tmp_path):
    """AEQ 0.10 has no int4 depthwise kernel: they get int8 instead of staying float32."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs, name="depthwise")
    result = export(model, tmp_path, variants="int4_weights,dynamic_int4", runs=2, warmup=0,
                    isolation="none")  # fmt: skip
    assert result.failed == {}
    for name in ("int4_weights", "dynamic_int4"):
        assert result[name]["ops"]["kernel_types"] == {"INT4": 2, "INT8": 1}
        assert result[name]["converter"]["int8_depthwise"] is True
