"""Native quantization-aware training under Keras 3, checked from the .tflite file.

The int8 and int8_only conversions of a native QAT model have every conv and
fully-connected kernel in int8, no Flex op, and agree with the Keras QAT model
on held-out digits, for the residual CNN and a MobileNet-style block.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import keras_opt.optimization as kopt
from keras_opt.backend import keras
from tests.conftest import build_sequential_cnn, compile_classifier
from tests.optimization.conftest import accuracy

pytestmark = pytest.mark.keras3_only

L = keras.layers
KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def mobilenet_style():
    """DepthwiseConv + BN + ReLU6 inverted-residual block with a residual Add."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    h = L.Conv2D(24, 3, padding="same", use_bias=False, name="stem")(inputs)
    h = L.ReLU(6.0, name="stem_relu6")(L.BatchNormalization(name="stem_bn")(h))
    r = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    r = L.ReLU(6.0, name="dw_relu6")(L.BatchNormalization(name="dw_bn")(r))
    r = L.BatchNormalization(name="project_bn")(L.Conv2D(24, 1, use_bias=False, name="project")(r))
    h = L.Add(name="residual")([h, r])
    h = L.Flatten()(L.MaxPooling2D()(h))
    outputs = L.Dense(10, activation="softmax", name="head")(h)
    return keras.Model(inputs, outputs, name="mobilenet_style")


def convert(model, int8_io=False):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def ops_and_predictions(content, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    details = interpreter.get_tensor_details()
    ops = [
        (op["op_name"], [details[i]["dtype"] for i in op["inputs"] if i >= 0])
        for op in interpreter._get_ops_details()
        if op["op_name"] != "DELEGATE"
    ]
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    predictions = []
    for image in x:
        value = image[None]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            value = np.clip(np.round(value / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], value)
        interpreter.invoke()
        predictions.append(int(np.argmax(interpreter.get_tensor(out["index"]))))
    return ops, np.asarray(predictions)


@pytest.fixture(scope="module")
def qat_models(trained_residual, digits):
    x, y, _, _ = digits
    mobile = compile_classifier(mobilenet_style(), keras.optimizers.Adam(3e-3))
    mobile.fit(x, y, epochs=6, batch_size=32, verbose=0)
    out = {}
    for name, model in (("residual", trained_residual), ("mobilenet_style", mobile)):
        qat = compile_classifier(kopt.quantize(model), keras.optimizers.Adam(1e-4))
        qat.fit(x, y, epochs=1, batch_size=32, verbose=0)
        out[name] = (model, qat)
    return out


@pytest.mark.parametrize("name", ["residual", "mobilenet_style"])
@pytest.mark.parametrize("int8_io", [False, True], ids=["int8", "int8_only"])
def test_every_kernel_is_int8_no_flex_and_the_file_agrees_with_keras(
    name, int8_io, qat_models, digits
):
    _, _, x_test, y_test = digits
    float_model, qat = qat_models[name]
    ops, predictions = ops_and_predictions(convert(qat, int8_io), x_test)
    kernels = [inputs for op, inputs in ops if op in KERNEL_OPS]
    assert len(kernels) == (3 if name == "residual" else 4)
    assert all(inputs[0] == np.int8 and inputs[1] == np.int8 for inputs in kernels), ops
    assert not [op for op, _ in ops if "FLEX" in op.upper() or op == "CUSTOM"]
    # No float op between int8 kernels: BN folded, ReLU/ReLU6 fused, one DEQUANTIZE at most
    # (for the float output of the int8 variant).
    names = [op for op, _ in ops]
    assert not [op for op in names if op in ("MUL", "RELU", "RELU6")], names
    assert names.count("DEQUANTIZE") == (0 if int8_io else 1)
    assert names.count("QUANTIZE") == (0 if int8_io else 1)
    assert names.count("ADD") == 1
    keras_predictions = np.argmax(qat.predict(x_test, verbose=0), axis=-1)
    assert np.mean(predictions == keras_predictions) >= 0.99
    if name == "residual":
        assert np.mean(predictions == y_test) >= accuracy(float_model, x_test, y_test) - 0.02


@pytest.mark.parametrize("name", ["residual", "mobilenet_style"])
def test_every_kernel_dense_included_has_one_int8_scale_per_output_channel(name, qat_models):
    from ai_edge_litert.interpreter import Interpreter

    _, qat = qat_models[name]
    interpreter = Interpreter(model_content=convert(qat))
    interpreter.allocate_tensors()
    details = interpreter.get_tensor_details()
    scales = {}
    for op in interpreter._get_ops_details():
        if op["op_name"] in KERNEL_OPS:
            kernel = details[int(op["inputs"][1])]
            q = kernel["quantization_parameters"]
            axis = 3 if op["op_name"] == "DEPTHWISE_CONV_2D" else 0
            assert kernel["dtype"] == np.int8
            assert q["quantized_dimension"] == axis
            assert len(q["scales"]) == kernel["shape"][axis] > 1
            assert np.all(q["zero_points"] == 0)  # symmetric
            assert np.abs(interpreter.get_tensor(kernel["index"])).max() <= 127  # narrow range
            scales[kernel["shape"][axis]] = np.asarray(q["scales"])
    # The Dense head (10 units) is in the file as a per-channel 1x1 CONV_2D kernel of 10
    # scales, not a per-tensor FULLY_CONNECTED one; its scales differ from unit to unit.
    assert 10 in scales
    assert np.unique(scales[10]).size > 1
    dense = [layer.layer for layer in qat.layers if hasattr(layer, "layer")]
    dense_units = {layer.units for layer in dense if isinstance(layer, keras.layers.Dense)}
    assert dense_units
    assert dense_units <= set(scales)


def test_dense_on_inputs_with_unknown_inner_dimensions_keeps_a_per_tensor_kernel():
    inputs = keras.Input((None, 6))
    outputs = L.Dense(4, name="proj")(L.Dense(5, activation="relu", name="inner")(inputs))
    model = compile_classifier(keras.Model(inputs, outputs), keras.optimizers.Adam(1e-3))
    qat = kopt.quantize(model)
    for name in ("inner", "proj"):
        assert tuple(qat.get_layer(name).kernel_min.shape) == ()
    fixed = keras.Input((3, 6))
    static = kopt.quantize(keras.Model(fixed, L.Dense(4, name="proj")(fixed)))
    assert tuple(static.get_layer("proj").kernel_min.shape) == (4,)
    x = np.random.RandomState(0).rand(2, 3, 6).astype("float32")
    # The 1x1-convolution path computes the same Dense (to float rounding).
    reference = x @ static.get_layer("proj").layer.kernel.numpy()
    reference += static.get_layer("proj").layer.bias.numpy()
    np.testing.assert_allclose(static.predict(x, verbose=0), reference, atol=0.05)


def test_conv_batchnorm_is_folded_and_relu_fused(qat_models):
    _, qat = qat_models["mobilenet_style"]
    kinds = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert not {"BatchNormalization", "ReLU"} & set(kinds.values())
    assert kinds["stem"] == kinds["dw"] == kinds["project"] == "QuantizeKernel"
    assert qat.get_layer("stem").activation == "relu6"
    assert qat.get_layer("project").activation == "linear"
    assert qat.get_layer("head").activation == "softmax"
    assert qat.get_layer("head").output_range is None  # TFLite fixes softmax's range


def test_strip_saves_and_loads_a_qat_model(qat_models, digits, tmp_path):
    _, _, x_test, _ = digits
    _, qat = qat_models["residual"]
    qat.save(tmp_path / "qat.keras")
    loaded = keras.models.load_model(tmp_path / "qat.keras")
    np.testing.assert_allclose(
        loaded.predict(x_test[:16], verbose=0), qat.predict(x_test[:16], verbose=0), atol=1e-6
    )
    stripped = kopt.strip(qat)
    assert all(type(layer).__module__.startswith("keras.") for layer in stripped.layers)
    np.testing.assert_allclose(
        stripped.predict(x_test[:32], verbose=0), qat.predict(x_test[:32], verbose=0), atol=0.1
    )
    kept = kopt.strip(qat, keep_quantization=True)
    assert any(type(layer).__name__ == "QuantizeKernel" for layer in kept.layers)


def _awkward_model():
    """Rescaling, an LSTM and a raw keras.ops call: three things int8 QAT cannot take."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = L.Rescaling(2.0, name="rescale")(inputs)
    x = L.Conv2D(8, 3, name="conv")(x)
    x = L.Reshape((6, 48))(x)
    x = L.LSTM(8, name="lstm")(x)
    x = keras.ops.multiply(x, 0.5)
    outputs = L.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def test_check_and_quantize_name_every_unsupported_layer(digits):
    _, _, x_test, _ = digits
    model = _awkward_model()
    report = kopt.check_quantizable(model)
    by_name = {u.name: u for u in report.unsupported}
    assert set(by_name) == {"rescale", "lstm", "multiply"}
    assert "preprocessing" in by_name["rescale"].reason
    assert all("skip_unsupported=True" in u.fix for u in report.unsupported)
    assert kopt.check_quantizable(build_sequential_cnn()).ok
    with pytest.raises(ValueError, match="3 layer") as info:
        kopt.quantize(model)
    assert "lstm (LSTM)" in str(info.value)
    qat = kopt.quantize(model, skip_unsupported=True)
    kinds = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert kinds["rescale"] == "Rescaling"
    assert kinds["lstm"] == "LSTM"
    assert kinds["conv"] == kinds["head"] == "QuantizeKernel"
    assert qat.predict(x_test[:4], verbose=0).shape == (4, 10)


def test_an_already_quantized_model_is_refused(qat_models):
    _, qat = qat_models["residual"]
    with pytest.raises(ValueError, match="already quantized"):
        kopt.quantize(qat)
    with pytest.raises(ValueError, match="strip first"):
        kopt.quantize(kopt.prune(build_sequential_cnn(), 0.5))


def test_pcqat_keeps_zeros_and_shared_values_into_the_int8_file(trained_residual, digits):
    from ai_edge_litert.interpreter import Interpreter

    x, y, x_test, _ = digits
    pcqat = kopt.collaborative(
        trained_residual,
        x[:512],
        y[:512],
        recipe="pcqat",
        target_sparsity=0.5,
        number_of_clusters=16,
        batch_size=64,
        optimizer=keras.optimizers.Adam(1e-4),
    )
    for row in kopt.compression_summary(pcqat).layers:
        if row.weights:
            assert row.quantized
            assert row.sparsity == pytest.approx(0.5, abs=0.01)
    interpreter = Interpreter(model_content=convert(pcqat))
    interpreter.allocate_tensors()
    kernels = [
        interpreter.get_tensor(int(op["inputs"][1]))
        for op in interpreter._get_ops_details()
        if op["op_name"] in KERNEL_OPS
    ]
    assert len(kernels) == 3
    for kernel in kernels:
        assert kernel.dtype == np.int8
        assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02)
        rows = kernel.reshape(kernel.shape[0], -1)  # output channel first in TFLite
        assert max(np.unique(row).size for row in rows) <= 16
        # One grid per kernel, BatchNorm folded in or not: <= 16 int8 values in the kernel.
        assert np.unique(kernel).size <= 16


@pytest.mark.parametrize(
    "recipe", [("quantize", "prune"), ("cluster", "prune"), ("prune", "prune"), ()]
)
def test_a_stage_order_that_cannot_be_preserved_is_refused(recipe):
    model = compile_classifier(build_sequential_cnn())
    with pytest.raises(ValueError, match="Argument `recipe`"):
        kopt.collaborative(model, np.zeros((4, 8, 8, 1)), np.zeros(4), recipe=recipe)


def test_preserving_clusters_of_an_unclustered_model_is_refused(trained_residual):
    with pytest.raises(ValueError, match="it was not clustered"):
        kopt.quantize(trained_residual, preserve="clusters")


def _branches_model():
    """Two conv branches concatenated, then average pooling: ranges for Concatenate/pooling."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((8, 8, 1))
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="a")(inputs)
    b = L.Conv2D(8, 1, padding="same", activation="relu", name="b")(inputs)
    h = L.AveragePooling2D(2, name="avg")(L.Concatenate(name="concat")([a, b]))
    h = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(16, 3, name="c")(h))
    outputs = L.Dense(10, activation="softmax", name="head")(h)
    return keras.Model(inputs, outputs, name="branches")


def test_concatenate_and_pooling_carry_int8_ranges_through_keras_opt_export(digits, tmp_path):
    import keras_opt.tflite

    x, y, x_test, y_test = digits
    model = compile_classifier(_branches_model(), keras.optimizers.Adam(3e-3))
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    qat = compile_classifier(kopt.quantize(model), keras.optimizers.Adam(1e-4))
    qat.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert type(qat.get_layer("concat")).__name__ == "QuantizeOutput"
    result = keras_opt.tflite.export(
        qat,
        str(tmp_path / "qat"),
        representative_data=x[:100],
        eval_data=(x_test, y_test),
        variants=["int8", "int8_only"],
        runs=2,
        isolation="none",
    )
    assert not result.failed
    keras_predictions = np.argmax(qat.predict(x_test, verbose=0), axis=-1)
    for variant in ("int8", "int8_only"):
        content = (tmp_path / "qat" / f"{variant}.tflite").read_bytes()
        ops, predictions = ops_and_predictions(content, x_test)
        names = [op for op, _ in ops]
        assert "CONCATENATION" in names
        assert "AVERAGE_POOL_2D" in names
        for op, inputs in ops:
            if op in ("CONCATENATION", "AVERAGE_POOL_2D", "MEAN", *KERNEL_OPS):
                assert inputs[0] == np.int8, (variant, op)
        assert np.mean(predictions == keras_predictions) >= 0.99


def test_float32_variant_of_a_qat_model_is_its_int8_graph_not_float_fake_quant(
    qat_models, digits, tmp_path
):
    import keras_opt.tflite

    _, _, x_test, y_test = digits
    _, qat = qat_models["residual"]
    result = keras_opt.tflite.export(
        qat,
        tmp_path,
        variants=["float32", "int8"],
        eval_data=(x_test, y_test),
        runs=2,
        isolation="none",
    )
    assert result.failed == {}
    # Converted with the trained ranges: the same int8 file as the int8 variant.
    assert result["int8"].same_file_as == "float32"
    assert result["float32"].converter["qat_ranges"] is True
    assert result["float32"].sha256 == result["int8"].sha256
