"""Failures: atomic writes, clear errors for every bad input, conversion errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from keras_opt.tflite import _convert as convert_mod
from keras_opt.tflite import benchmark, export


def _listing(path):
    return sorted(os.listdir(path))


def test_failed_write_leaves_no_partial_file_and_no_claim(
    tiny_dense, tiny_data, tmp_path, monkeypatch
):
    calls = []

    def half_then_fail(handle, data):
        calls.append(len(data))
        if len(calls) == 2:  # the second variant dies half-way through its write
            handle.write(data[: len(data) // 2])
            raise OSError("disk full (simulated)")
        handle.write(data)

    monkeypatch.setattr(convert_mod, "_write_payload", half_then_fail)
    x, y = tiny_data
    out = tmp_path / "out"
    result = export(
        tiny_dense,
        out,
        variants=["float32", "float16", "dynamic_int8"],
        eval_data=(x, y),
        isolation="none",
        runs=3,
    )
    assert set(result.failed) == {"float16"}
    assert "disk full (simulated)" in result.failed["float16"]
    files = _listing(out)
    assert "float16.tflite" not in files
    assert not [f for f in files if f.startswith(".tmp-") or f.endswith(".part")]
    assert {"float32.tflite", "dynamic_int8.tflite", "manifest.json", "report.md"} <= set(files)
    manifest = json.loads((out / "manifest.json").read_text())
    claimed = {v["name"]: v for v in manifest["variants"]}
    assert claimed["float16"]["file"] is None
    assert claimed["float16"]["size_bytes"] is None
    for v in manifest["variants"]:
        if v["file"]:
            assert (out / v["file"]).is_file()
    assert "float16 failed" in (out / "report.md").read_text()


def test_interrupted_export_leaves_nothing_claimed(tiny_dense, tmp_path, monkeypatch):
    def interrupt(handle, data):
        handle.write(data[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_mod, "_write_payload", interrupt)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export(tiny_dense, out, variants=["float32"], isolation="none", runs=2)
    assert _listing(out) == []  # no partial .tflite, no manifest


def test_failed_variant_removes_a_stale_artifact(tiny_dense, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "float16.tflite").write_bytes(b"old artifact")

    def fail(handle, data):
        if data[4:8] == b"TFL3":  # only .tflite payloads; the manifest/report still write
            raise OSError("no space")
        handle.write(data)

    monkeypatch.setattr(convert_mod, "_write_payload", fail)
    result = export(tiny_dense, out, variants=["float16"], isolation="none", runs=2)
    assert result.path("float16") is None
    assert not (out / "float16.tflite").exists()


def test_missing_representative_data_for_int8(tiny_dense, tmp_path):
    with pytest.raises(
        ValueError, match=r"`representative_data` is required for variant\(s\) int8"
    ):
        export(tiny_dense, tmp_path, variants=["float32", "int8"])
    assert _listing(tmp_path) == []


def test_unknown_variant_names(tiny_dense, tmp_path):
    with pytest.raises(ValueError, match=r"unknown variant 'int9'.*Did you mean 'int8'"):
        export(tiny_dense, tmp_path, variants=["float32", "int9"])
    with pytest.raises(TypeError, match="`variants`"):
        export(tiny_dense, tmp_path, variants=[3])


def test_unconvertible_op_is_named_with_select_tf_ops_hint(tmp_path):
    import tensorflow as tf

    from keras_opt.backend import keras

    class Determinant(keras.layers.Layer):
        def call(self, x):
            return tf.linalg.det(tf.reshape(x, (-1, 2, 2)))[:, None]

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1)(Determinant()(inputs)), name="det")
    result = export(model, tmp_path / "a", variants=["float32"], isolation="none", runs=2)
    error = result.failed["float32"]
    assert "MatrixDeterminant" in error
    assert "select_tf_ops=True" in error
    assert not (tmp_path / "a" / "float32.tflite").exists()

    flex = export(
        model, tmp_path / "b", variants=["float32"], isolation="none", runs=2, select_tf_ops=True
    )
    entry = flex["float32"]
    assert entry["error"] is None
    assert entry["ops"]["needs_flex_delegate"]
    assert entry["ops"]["custom_ops"] == ["FlexMatrixDeterminant"]
    assert "SELECT_TF_OPS" in entry["converter"]["supported_ops"]
    assert "Flex delegate" in entry["runtime_error"]  # this LiteRT build has no Flex kernels
    assert "needs the Flex delegate" in (tmp_path / "b" / "report.md").read_text()


def test_data_with_wrong_shape_or_dtype(tiny_dense, tmp_path):
    with pytest.raises(ValueError, match=r"wrong shape for input 'features'.*\(batch, 4\)"):
        export(tiny_dense, tmp_path, variants=["int8"], representative_data=np.zeros((8, 5)))
    with pytest.raises(TypeError, match=r"must be floating point for input 'features'"):
        export(tiny_dense, tmp_path, variants=["int8"], representative_data=np.zeros((8, 4), int))
    with pytest.raises(ValueError, match="`eval_data` has the wrong shape"):
        export(tiny_dense, tmp_path, variants=["float32"], eval_data=np.zeros((8, 2, 2), "f4"))
    assert _listing(tmp_path) == []


def test_unwritable_output_folder(tiny_dense, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(
        ValueError, match=r"Argument `out_dir` must be a folder keras_opt can write"
    ):
        export(tiny_dense, blocker / "sub", variants=["float32"])


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"threads": 0}, ValueError, r"`threads` must be >= 1. Received: threads=0"),
        ({"runs": 1.5}, TypeError, r"`runs` must be an integer"),
        ({"isolation": "thread"}, ValueError, r"`isolation` must be one of"),
        ({"int8_io_dtype": "int4"}, ValueError, r"`int8_io_dtype` must be one of"),
        ({"metric": "f1"}, ValueError, r"`metric` must be 'accuracy' or a callable"),
        ({"denylist": "CONV_2D"}, TypeError, r"`denylist` must be a list"),
    ],
)
def test_bad_arguments(tiny_dense, tmp_path, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        export(tiny_dense, tmp_path, variants=["float32"], **kwargs)


def test_not_a_model(tmp_path):
    with pytest.raises(TypeError, match="Argument `model` must be a"):
        export("model.keras", tmp_path)


def test_benchmark_rejects_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"this is not a flatbuffer at all")
    with pytest.raises(ValueError, match=r"not one \(its file identifier is b' is '"):
        benchmark(bad)
    with pytest.raises(ValueError, match="no such file"):
        benchmark(tmp_path / "missing.tflite")
    truncated = tmp_path / "trunc.tflite"
    truncated.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 4)
    with pytest.raises(ValueError, match="Cannot benchmark"):
        benchmark(truncated)


def test_benchmark_measures_a_real_file(exported):
    r = benchmark(exported.path("int8"), threads=2, runs=10, warmup=2)
    assert r.threads == 2
    assert r.runs == 10
    assert len(r.samples_ms) == 10
    assert r.delegate == "xnnpack"
    assert r.latency_ms["mean"] == pytest.approx(np.mean(r.samples_ms))
    assert r.latency_ms["p50"] == pytest.approx(np.median(r.samples_ms))
    plain = benchmark(exported.path("int8"), runs=3, use_xnnpack=False)
    assert plain.delegate == "none"
    with pytest.raises(ValueError, match="`threads` must be >= 1"):
        benchmark(exported.path("int8"), threads=0)


def test_user_metric_and_parity_without_labels(tiny_dense, tiny_data, tmp_path):
    x, y = tiny_data

    def top2(y_true, y_pred):
        top = np.argsort(y_pred, -1)[:, -2:]
        return float(np.mean([t in row for t, row in zip(y_true, top, strict=False)]))

    result = export(
        tiny_dense,
        tmp_path / "m",
        variants=["float32"],
        eval_data=(x, y),
        metric=top2,
        isolation="none",
        runs=2,
    )
    keras_top2 = top2(y, tiny_dense.predict(x, verbose=0))
    assert result["float32"]["metrics"] == {"top2": pytest.approx(keras_top2)}
    no_labels = export(
        tiny_dense, tmp_path / "n", variants=["float32"], eval_data=x, isolation="none", runs=2
    )
    assert no_labels["float32"]["metrics"] == {}
    assert no_labels["float32"]["parity"]["max_abs_diff"] < 1e-5


def test_inspect_tflite_names_a_corrupt_file_and_the_fix(exported, tmp_path):
    from keras_opt.tflite import inspect_tflite

    with open(exported.path("int8"), "rb") as f:
        good = f.read()
    assert inspect_tflite(exported.path("int8"))["used"] == inspect_tflite(good)["used"]
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(good[: len(good) // 3])
    with pytest.raises(ValueError, match=r"truncated.tflite' cannot be read as a TFLite") as err:
        inspect_tflite(truncated)
    assert "truncated or corrupt" in str(err.value)
    assert "Export the model again" in str(err.value)
    text = tmp_path / "text.tflite"
    text.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(ValueError, match=r"text.tflite' is not one .*keras-opt convert"):
        inspect_tflite(text)
    with pytest.raises(ValueError, match="the given bytes are not one"):
        inspect_tflite(b"short")
    with pytest.raises(ValueError, match="no such file"):
        inspect_tflite(tmp_path / "missing.tflite")
    with pytest.raises(TypeError, match="path of a .tflite file or its bytes"):
        inspect_tflite(3)
    assert _listing(tmp_path) == ["text.tflite", "truncated.tflite"]  # nothing added
