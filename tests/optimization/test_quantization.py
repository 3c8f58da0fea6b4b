"""QAT: compatibility check, partial quantization, int8 TFLite accuracy (tf_keras)."""

from __future__ import annotations

import numpy as np
import pytest

import keras_opt.optimization as kopt
from keras_opt.backend import keras
from tests.conftest import build_sequential_cnn, compile_classifier
from tests.optimization.conftest import accuracy, tflite_accuracy

pytestmark = pytest.mark.tf_keras_only


def _awkward_model():
    """Rescaling, BatchNorm after Dense and a raw TF op: three layers TFMOT rejects."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(2.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv")(x)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(16, name="dense")(x)
    x = keras.layers.BatchNormalization(name="dense_bn")(x)
    x = x * 0.5
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def qat_model(trained_residual, digits):
    x, y, _, _ = digits
    qat = compile_classifier(kopt.quantize(trained_residual))
    qat.fit(x, y, epochs=1, batch_size=32, verbose=0)
    return qat


def test_qat_int8_tflite_is_within_one_point_of_the_float_model(
    qat_model, trained_residual, digits
):
    _, _, x_test, y_test = digits
    float_acc = accuracy(trained_residual, x_test, y_test)
    int8_acc = tflite_accuracy(qat_model, x_test, y_test)
    assert int8_acc >= float_acc - 0.01, (int8_acc, float_acc)


def test_quantize_wraps_conv_batchnorm_and_the_residual_add(qat_model):
    report = kopt.compression_summary(qat_model)
    assert {row.type for row in report.layers if row.quantized} >= {
        "Conv2D",
        "BatchNormalization",
        "Add",
        "Dense",
    }


def test_strip_turns_a_qat_model_into_a_float_model_that_saves(qat_model, digits, tmp_path):
    _, _, x_test, _ = digits
    stripped = kopt.strip(qat_model)
    assert not any("Quantize" in type(layer).__name__ for layer in stripped.layers)
    stripped.save(tmp_path / "float.keras")
    loaded = keras.models.load_model(tmp_path / "float.keras")
    # Same weights, no fake quantization: close to the QAT model's outputs.
    np.testing.assert_allclose(
        loaded.predict(x_test[:32], verbose=0), qat_model.predict(x_test[:32], verbose=0), atol=0.1
    )
    kept = kopt.strip(qat_model, keep_quantization=True)
    assert any(type(layer).__name__ == "QuantizeWrapperV2" for layer in kept.layers)


def test_check_names_each_unsupported_layer_with_reason_and_fix():
    report = kopt.check_quantizable(_awkward_model())
    assert not report.ok
    by_name = {u.name: u for u in report.unsupported}
    assert set(by_name) == {"rescale", "dense_bn", "tf.math.multiply"}
    assert by_name["rescale"].type == "Rescaling"
    assert "preprocessing" in by_name["rescale"].reason
    assert "after Dense" in by_name["dense_bn"].reason
    assert by_name["tf.math.multiply"].type == "TFOpLambda"
    assert all("skip_unsupported=True" in u.fix for u in report.unsupported)
    assert "rescale (Rescaling)" in str(report)
    assert kopt.check_quantizable(build_sequential_cnn()).ok


def test_quantize_fails_before_tfmot_and_lists_every_unsupported_layer():
    with pytest.raises(ValueError, match="3 layer") as info:
        kopt.quantize(_awkward_model())
    for name in ("rescale", "dense_bn", "tf.math.multiply"):
        assert name in str(info.value)


def test_skip_unsupported_keeps_those_layers_in_float(digits):
    _, _, x_test, y_test = digits
    qat = compile_classifier(kopt.quantize(_awkward_model(), skip_unsupported=True))
    kinds = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert kinds["rescale"] == "Rescaling"
    assert kinds["dense_bn"] == "BatchNormalization"
    assert kinds["quant_conv"] == "QuantizeWrapperV2"
    assert kinds["quant_head"] == "QuantizeWrapperV2"
    # The partly quantized model still converts and runs.
    assert 0.0 <= tflite_accuracy(qat, x_test[:20], y_test[:20]) <= 1.0


def test_selected_layers_only_and_nested_models():
    inner = build_sequential_cnn()
    inputs = keras.Input((8, 8, 1))
    outer = keras.Model(inputs, keras.layers.Activation("linear", name="out")(inner(inputs)))
    qat = kopt.quantize(outer, layers=[keras.layers.Dense])
    kinds = [type(layer).__name__ for layer in qat.layers]
    assert "Sequential" not in kinds  # inlined
    wrapped = {type(layer.layer).__name__ for layer in qat.layers if hasattr(layer, "layer")}
    # TFMOT also quantizes the Flatten feeding the chosen Dense; the convolution stays float.
    assert wrapped == {"Flatten", "Dense"}
    assert "Conv2D" in kinds
    full = kopt.quantize(outer)
    assert sum(type(layer).__name__ == "QuantizeWrapperV2" for layer in full.layers) >= 5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"preserve": "zeros"}, ValueError, "Argument `preserve` must be one of None"),
        ({"skip_unsupported": 1}, TypeError, "Argument `skip_unsupported`"),
        ({"layers": ["conv2"]}, ValueError, r"Received: layers='conv2'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        kopt.quantize(build_sequential_cnn(), **kwargs)
