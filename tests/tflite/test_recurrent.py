"""Recurrent models export (batch 1 by default), match Keras, and say why int8 fails."""

from __future__ import annotations

import numpy as np
import pytest

from keras_opt.backend import is_tf_keras, keras
from keras_opt.tflite import _convert as convert_mod
from keras_opt.tflite import export, inspect_tflite

pytestmark = pytest.mark.slow

ROWS = (8, 8)  # a digit image read row by row: 8 time steps of 8 features


@pytest.fixture(scope="module")
def row_digits():
    """sklearn digits as sequences: (x_train, y_train, x_test, y_test), values in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")
    y = d.target.astype("int64")
    idx = np.random.RandomState(0).permutation(len(x))
    x, y = x[idx], y[idx]
    return x[:900], y[:900], x[1400:], y[1400:]


def _bidirectional_stack():
    """Bidirectional LSTM returning sequences, stacked under an LSTM."""
    inputs = keras.Input(ROWS, name="rows")
    h = keras.layers.Bidirectional(keras.layers.LSTM(12, return_sequences=True))(inputs)
    h = keras.layers.LSTM(12)(h)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h), name="bilstm")


def _gru_simple_rnn_stack():
    """GRU returning sequences, stacked under a SimpleRNN."""
    inputs = keras.Input(ROWS, name="rows")
    h = keras.layers.GRU(12, return_sequences=True)(inputs)
    h = keras.layers.SimpleRNN(12)(h)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h), name="gru_rnn")


@pytest.mark.parametrize("build", [_bidirectional_stack, _gru_simple_rnn_stack])
def test_recurrent_model_exports_with_batch_1_and_matches_keras(build, row_digits, tmp_path):
    x_train, y_train, x_test, y_test = row_digits
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=64, epochs=4, verbose=0)
    keras_acc = float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test))
    assert keras_acc > 0.5  # trained: chance is 0.1

    result = export(
        model,
        tmp_path,
        representative_data=x_train[:32],
        eval_data=(x_test, y_test),
        variants=["float32", "float16", "dynamic_int8", "int8"],
        isolation="none",  # int8 of a recurrent model still gets its own process
        runs=3,
        warmup=1,
    )
    batch = result.manifest["batch_size"]
    assert batch["requested"] == "auto"
    assert batch["default"] == 1
    assert "recurrent layers" in batch["reason"]
    assert batch["recurrent_layers"] == [layer.name for layer in model.layers[1:-1]]
    for name in ("float32", "float16", "dynamic_int8"):
        entry = result[name]
        assert entry["error"] is None, entry["error"]
        assert entry["batch_size"] == 1
        assert [s["shape"] for s in entry["input_shapes"]] == [[1, *ROWS]]
        assert entry["inputs"][0]["shape"] == [1, *ROWS]
        assert entry["ops"]["builtin_only"]
    f32 = result["float32"]
    assert f32["parity"]["max_abs_diff"] < 1e-4
    assert f32["parity"]["top1_agreement"] == 1.0
    assert f32["metrics"]["accuracy"] == pytest.approx(keras_acc)
    assert result["float16"]["parity"]["max_abs_diff"] < 1e-2
    assert abs(result["float16"]["metrics"]["accuracy"] - keras_acc) <= 0.01
    assert abs(result["dynamic_int8"]["metrics"]["accuracy"] - keras_acc) <= 0.02
    int8 = result["int8"]
    if int8["error"]:  # TF 2.21's calibrator crashes on recurrent while loops
        assert "calibrat" in int8["error"]
        assert "dynamic_int8" in int8["error"]  # names what to ship instead
        assert "int8" in result.recommendation["why_not"]
    else:  # tf_keras LSTMs become fused UNIDIRECTIONAL_SEQUENCE_LSTM ops and quantize
        assert int8["ops"]["int8_tensors"] > 0
        assert abs(int8["metrics"]["accuracy"] - keras_acc) <= 0.05
    lstm_fused = "UNIDIRECTIONAL_SEQUENCE_LSTM" in f32["ops"]["used"]
    assert lstm_fused == (is_tf_keras() and build is _bidirectional_stack)
    # A fused LSTM keeps state between invokes; parity resets it, the report says so.
    assert (f32["ops"]["variable_tensors"] > 0) == lstm_fused
    assert ("reset_all_variables" in (tmp_path / "report.md").read_text()) == lstm_fused


def _tiny_lstm():
    keras.utils.set_random_seed(0)
    inputs = keras.Input(ROWS, name="rows")
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.LSTM(4)(inputs)), name="lstm")


def test_dynamic_batch_fails_with_a_fix_and_auto_retries_with_batch_1(
    row_digits, tmp_path, monkeypatch
):
    x_test = row_digits[2][:16]
    model = _tiny_lstm()
    dynamic = export(
        model, tmp_path / "dyn", variants=["float32"], batch_size=None, isolation="none", runs=2
    )
    error = dynamic.failed["float32"]
    assert "static batch size" in error
    assert "batch_size=1" in error
    assert "--batch-size 1" in error
    assert not (tmp_path / "dyn" / "float32.tflite").exists()
    assert dynamic.manifest["batch_size"]["default"] is None

    # A while loop keras_opt does not recognize as recurrent: "auto" converts it again
    # with batch 1 after the dynamic-batch failure.
    monkeypatch.setattr(convert_mod, "recurrent_layers", lambda m: [])
    auto = export(
        model, tmp_path / "auto", variants=["float32"], eval_data=x_test, isolation="none", runs=2
    )
    entry = auto["float32"]
    assert entry["error"] is None
    assert entry["batch_size"] == 1
    assert "converted with batch size 1" in entry["batch_note"]
    assert entry["input_shapes"][0]["shape"] == [1, *ROWS]
    assert entry["parity"]["max_abs_diff"] < 1e-5
    assert auto.manifest["batch_size"]["default"] is None
    assert "again with batch size 1" in auto.manifest["batch_size"]["reason"]
    assert "converted with batch size 1" in (tmp_path / "auto" / "report.md").read_text()


def test_batch_1_drops_the_dynamic_batch_ops(exported, trained_cnn, digits, tmp_path):
    _, _, x_test, y_test = digits
    fixed = export(
        trained_cnn,
        tmp_path,
        variants=["float32"],
        eval_data=(x_test, y_test),
        batch_size=1,
        isolation="none",
        runs=2,
    )
    dynamic_ops = inspect_tflite(exported.path("float32"))["used"]
    fixed_ops = inspect_tflite(fixed.path("float32"))["used"]
    # Keras 3's Flatten on a dynamic batch computes its shape at run time ...
    for op in ("SHAPE", "STRIDED_SLICE", "PACK"):
        if not is_tf_keras():  # tf_keras reshapes to -1: no shape ops to remove
            assert dynamic_ops.get(op, 0) >= 1, op
        assert op not in fixed_ops, op
    assert sum(fixed_ops.values()) <= sum(dynamic_ops.values())
    # ... batch 1 folds it away; the compute ops stay.
    assert fixed_ops["CONV_2D"] == dynamic_ops["CONV_2D"]
    assert fixed_ops["FULLY_CONNECTED"] == dynamic_ops["FULLY_CONNECTED"]
    assert exported["float32"]["input_shapes"][0]["shape"] == [-1, 8, 8, 1]
    assert fixed["float32"]["input_shapes"][0]["shape"] == [1, 8, 8, 1]
    assert fixed["float32"]["batch_size"] == 1
    assert fixed.manifest["batch_size"]["requested"] == 1
    # Same function: parity with Keras over every test sample, run one by one.
    assert fixed["float32"]["parity"]["max_abs_diff"] < 1e-4
    assert fixed["float32"]["metrics"] == exported["float32"]["metrics"]


@pytest.mark.parametrize(
    ("value", "exc", "pattern"),
    [
        (0, ValueError, r"`batch_size` must be >= 1. Received: batch_size=0"),
        ("one", TypeError, r"`batch_size` must be 'auto', None or an integer >= 1"),
        (True, TypeError, r"`batch_size` must be 'auto', None or an integer >= 1"),
    ],
)
def test_bad_batch_size(tiny_dense, tmp_path, value, exc, pattern):
    with pytest.raises(exc, match=pattern):
        export(tiny_dense, tmp_path, variants=["float32"], batch_size=value)
