"""``keras-opt convert`` and ``keras-opt benchmark`` end to end on a saved ``.keras`` file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_opt.cli import main


@pytest.fixture(scope="module")
def saved(trained_cnn, digits, tmp_path_factory):
    x_train, _, x_test, y_test = digits
    root = tmp_path_factory.mktemp("cli")
    path = root / "digits_cnn.keras"
    trained_cnn.save(path)
    np.savez(root / "cal.npz", image=x_train[:100])
    np.savez(root / "eval.npz", x=x_test, y=y_test)
    return root, path


def test_convert_end_to_end(saved, capfd):
    root, model = saved
    out = root / "out"
    status = main(
        [
            "convert", str(model),
            "--calibration", str(root / "cal.npz"),
            "--eval", str(root / "eval.npz"),
            "--variants", "int8",
            "--out", str(out),
            "--runs", "5",
        ]
    )  # fmt: skip
    captured = capfd.readouterr()
    assert status == 0, captured.err
    terminal = captured.out + captured.err
    # The closing output opens with what to ship, then the table.
    verdict = next(ln for ln in captured.out.splitlines() if "1.0 point of the Keras model" in ln)
    assert verdict.startswith(("Ship int8", "No variant"))
    assert captured.out.index(verdict) < captured.out.index("variant  ")
    assert "int8" in captured.out
    assert "accuracy" in captured.out
    assert "manifest:" in captured.out
    # converter/TensorFlow chatter goes to the log file, not the terminal
    for noise in ("fully_quantize", "XNNPACK", "absl", "tf.function"):
        assert noise not in terminal
    assert (out / "convert.log").stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [v["name"] for v in manifest["variants"]] == ["int8"]
    assert manifest["converter"]["isolation"] == "variant"
    assert manifest["variants"][0]["metrics"]["accuracy"] > 0.85
    n_eval = len(np.load(root / "eval.npz")["y"])
    assert manifest["data"] == {"calibration_samples": 100, "eval_samples": n_eval}

    status = main(["benchmark", str(out / "int8.tflite"), "--runs", "5", "--threads", "2",
                   "--json", str(root / "bench.json")])  # fmt: skip
    captured = capfd.readouterr()
    assert status == 0
    assert "p50/p90/p99" in captured.out
    assert "2 thread(s)" in captured.out
    assert "XNNPACK" not in captured.out + captured.err
    bench = json.loads((root / "bench.json").read_text())
    assert bench["runs"] == 5
    assert set(bench["latency_ms"]) == {"mean", "std", "p50", "p90", "p99"}


def test_cli_user_errors(saved, tmp_path, capfd):
    root, model = saved
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage!" * 4)
    assert main(["benchmark", str(bad)]) == 2
    assert "must be a TFLite (LiteRT) flatbuffer" in capfd.readouterr().err

    out = str(tmp_path / "o")
    assert main(["convert", str(model), "--variants", "int9", "--out", out]) == 2
    assert "unknown variant 'int9'" in capfd.readouterr().err
    assert main(["convert", str(model), "--variants", "aeq:nope", "--out", out]) == 2
    err = capfd.readouterr().err
    assert "`--variants` names an unknown AI Edge Quantizer recipe 'aeq:nope'" in err

    assert main(["convert", str(model), "--variants", "int8", "--out", out]) == 2
    assert "`--calibration` is required" in capfd.readouterr().err

    np.savez(tmp_path / "wrong.npz", x=np.zeros((4, 8, 8, 3), "float32"))
    args = ["convert", str(model), "--calibration", str(tmp_path / "wrong.npz"), "--out", out]
    assert main([*args, "--variants", "int8"]) == 2
    assert "wrong shape for input 'image'" in capfd.readouterr().err

    assert main(["convert", str(tmp_path / "nope.keras"), "--out", out]) == 2
    assert "does not exist" in capfd.readouterr().err

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["convert", str(model), "--out", str(blocker / "sub")]) == 2
    assert "cannot create the output folder" in capfd.readouterr().err


def test_convert_refuses_lambda_layers_in_safe_mode(tmp_path, capfd):
    from keras_opt.backend import keras

    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(outputs), name="with_lambda")
    path = tmp_path / "lambda.keras"
    model.save(path)
    out = tmp_path / "out"
    assert main(["convert", str(path), "--variants", "float32", "--out", str(out)]) == 2
    err = capfd.readouterr().err
    assert "safe mode" in err
    assert "--unsafe" in err
    status = main(
        ["convert", str(path), "--variants", "float32", "--out", str(out), "--unsafe",
         "--isolation", "none", "--runs", "2"]
    )  # fmt: skip
    assert status == 0, capfd.readouterr().err
    assert (out / "float32.tflite").is_file()


def test_convert_accepts_a_savedmodel_folder(trained_cnn, digits, tmp_path, capfd):
    from keras_opt.backend import is_tf_keras

    _, _, x_test, y_test = digits
    folder = tmp_path / "saved"
    if is_tf_keras():
        trained_cnn.save(folder, save_format="tf")
    else:
        trained_cnn.export(folder, verbose=False)
    np.savez(tmp_path / "eval.npz", image=x_test, y=y_test)
    out = tmp_path / "out"
    args = ["convert", str(folder), "--variants", "float32", "--out", str(out), "--runs", "3"]
    status = main([*args, "--eval", str(tmp_path / "eval.npz"), "--isolation", "none"])
    assert status == 0, capfd.readouterr().err
    entry = json.loads((out / "manifest.json").read_text())["variants"][0]
    assert entry["parity"]["max_abs_diff"] < 1e-4
    keras_acc = float(np.mean(trained_cnn.predict(x_test, verbose=0).argmax(-1) == y_test))
    assert entry["metrics"]["accuracy"] == pytest.approx(keras_acc)


def _leftovers(path):
    return sorted(p.name for p in path.iterdir()) if path.exists() else None


def test_convert_refuses_a_corrupt_keras_file_and_leaves_nothing(saved, tmp_path, capfd):
    _, model = saved
    data = model.read_bytes()
    cases = {
        "truncated.keras": data[: len(data) // 2],
        "text.keras": b"this is not a model",
    }
    for name, content in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        out = tmp_path / f"out_{name}"
        assert main(["convert", str(bad), "--out", str(out)]) == 2
        err = capfd.readouterr().err
        assert f"MODEL '{bad}' is not a readable Keras model file" in err
        assert "File not found" not in err  # Keras' misleading message
        assert "save the model again with model.save('model.keras')" in err
        assert _leftovers(out) is None  # nothing created


def test_convert_failing_early_leaves_no_log_behind(saved, tmp_path, capfd):
    _, model = saved
    out = tmp_path / "a" / "b"
    assert main(["convert", str(model), "--variants", "int8", "--out", str(out)]) == 2
    assert "`--calibration` is required" in capfd.readouterr().err
    assert not (tmp_path / "a").exists()  # the folders this run created are gone too

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    assert main(["convert", str(model), "--variants", "int9", "--out", str(existing)]) == 2
    assert "unknown variant 'int9'" in capfd.readouterr().err
    assert _leftovers(existing) == ["keep.txt"]  # no convert.log; the user's file stays

    for value in ("0", "two"):
        assert main(["convert", str(model), "--batch-size", value, "--out", str(out)]) == 2
        assert "--batch-size must be auto, dynamic or an integer >= 1" in capfd.readouterr().err
    assert main(["convert", str(model), "--accuracy-budget", "-1", "--out", str(out)]) == 2
    assert "--accuracy-budget must be >= 0" in capfd.readouterr().err
    assert not (tmp_path / "a").exists()


def test_convert_batch_size_flag(saved, capfd):
    root, model = saved
    out = root / "batch1"
    args = ["convert", str(model), "--variants", "float32", "--batch-size", "1", "--out",
            str(out), "--runs", "2", "--warmup", "0", "--isolation", "none",
            "--eval", str(root / "eval.npz"), "--accuracy-budget", "0.02"]  # fmt: skip
    assert main(args) == 0, capfd.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["variants"][0]
    assert entry["batch_size"] == 1
    assert entry["input_shapes"][0]["shape"] == [1, 8, 8, 1]
    assert entry["latency"]["warmup"] == 0
    assert manifest["accuracy_budget"] == 0.02
    assert manifest["recommendation"]["smallest"]["name"] == "float32"
