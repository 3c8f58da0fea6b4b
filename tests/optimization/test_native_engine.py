"""keras_opt's native Keras 3 engine: every supported layer, nested models, save/load,
clone, the .tflite file, and the stripped model without keras_opt (Keras 3 only)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_opt.optimization as kopt
from keras_opt.backend import keras
from tests.conftest import build_residual_cnn, compile_classifier
from tests.optimization.conftest import pruning_mask

pytestmark = pytest.mark.keras3_only

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _image_model():
    """Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose and Dense on 8x8 digits."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", name="separable")(x)
    x = keras.layers.Conv2DTranspose(8, 3, padding="same", name="transpose")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="image_layers")


def _token_model():
    """Embedding and Conv1D on the digit pixels read as tokens (17 grey levels)."""
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.Input((64,), dtype="int32"),
            keras.layers.Embedding(17, 8, name="embedding"),
            keras.layers.Conv1D(8, 3, name="conv1d"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(10, activation="softmax", name="head"),
        ],
        name="token_layers",
    )


def _volume_model():
    """Conv3D on the digits as 4x4x4 volumes."""
    keras.utils.set_random_seed(3)
    return keras.Sequential(
        [
            keras.Input((4, 4, 4, 1)),
            keras.layers.Conv3D(8, 2, name="conv3d"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", name="head"),
        ],
        name="volume_layers",
    )


KERNELS = {
    "image_layers": {
        "conv": ["kernel"],
        "depthwise": ["kernel"],
        "separable": ["depthwise_kernel", "pointwise_kernel"],
        "transpose": ["kernel"],
        "head": ["kernel"],
    },
    "token_layers": {"embedding": ["embeddings"], "conv1d": ["kernel"], "head": ["kernel"]},
    "volume_layers": {"conv3d": ["kernel"], "head": ["kernel"]},
}


def _inputs(name, digits):
    x, y, _, _ = digits
    if name == "token_layers":
        return np.round(x[:256, ..., 0] * 16).astype("int32").reshape(-1, 64), y[:256]
    if name == "volume_layers":
        return x[:256].reshape(-1, 4, 4, 4, 1), y[:256]
    return x[:256], y[:256]


def _kernel(layer, attr):
    return np.asarray(getattr(layer, attr).numpy())


@pytest.mark.parametrize("build", [_image_model, _token_model, _volume_model])
def test_every_supported_layer_is_pruned_and_clustered(build, digits):
    model = build()
    x, y = _inputs(model.name, digits)
    kernels = KERNELS[model.name]

    pruned = compile_classifier(kopt.prune(model, target_sparsity=0.5))
    assert {layer.name for layer in pruned.layers if hasattr(layer, "masks")} == set(kernels)
    pruned.fit(x, y, epochs=2, batch_size=32, verbose=0)
    stripped = kopt.strip(pruned)
    for name, attrs in kernels.items():
        for attr in attrs:
            values = _kernel(stripped.get_layer(name), attr)
            assert np.mean(values == 0) == pytest.approx(0.5, abs=0.02), (name, attr)

    clustered = compile_classifier(kopt.cluster(model, 4, per_channel=True))
    clustered.fit(x, y, epochs=1, batch_size=64, verbose=0)
    stripped = kopt.strip(clustered)
    for name, attrs in kernels.items():
        layer = stripped.get_layer(name)
        assert type(layer).__module__.startswith("keras.")
        for attr in attrs:
            values = _kernel(layer, attr)
            assert np.unique(values).size > 4, (name, attr)  # per channel, not per kernel
            from keras_opt.optimization._native import kernels as native_kernels

            axis = native_kernels.output_axis(layer, attr, values.ndim)
            rows = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
            assert max(np.unique(row).size for row in rows) <= 4, (name, attr)


def test_nested_model_and_residual_branch_keep_their_structure(trained_residual, digits):
    x, y, x_test, _ = digits
    inputs = keras.Input((8, 8, 1))
    trunk = keras.models.clone_model(trained_residual)
    trunk.set_weights(trained_residual.get_weights())
    features = trunk(inputs)
    side = keras.layers.Dense(10, name="side")(keras.layers.Flatten()(inputs))
    outputs = keras.layers.Softmax()(keras.layers.Add(name="merge")([features, side]))
    outer = keras.Model(inputs, outputs, name="outer")

    pruned = compile_classifier(kopt.prune(outer, target_sparsity=0.7, skip="side"))
    nested = [layer for layer in pruned.layers if isinstance(layer, keras.Model)]
    assert len(nested) == 1  # Keras 3: nested models stay nested
    assert type(nested[0].get_layer("head")).__name__ == "PruneLowMagnitude"
    assert type(pruned.get_layer("side")).__name__ == "Dense"
    pruned.fit(x[:512], y[:512], epochs=2, batch_size=64, verbose=0)
    stripped = kopt.strip(pruned)
    report = kopt.compression_summary(stripped)
    for name in ("stem", "res_conv", "head"):
        assert report[name].sparsity == pytest.approx(0.7, abs=0.01)
    assert report["side"].sparsity < 0.01
    np.testing.assert_allclose(
        stripped.predict(x_test[:32], verbose=0), pruned.predict(x_test[:32], verbose=0), atol=1e-5
    )


def test_unstripped_models_save_load_and_resume_with_the_same_masks_and_centroids(
    trained_residual, digits, tmp_path
):
    x, y, x_test, _ = digits
    pruned = compile_classifier(kopt.prune(trained_residual, target_sparsity=0.5))
    pruned.fit(x[:640], y[:640], epochs=1, batch_size=64, verbose=0)  # ramp: 10 steps
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded).__name__ == "PrunedModel"
    head, loaded_head = pruned.get_layer("head"), loaded.get_layer("head")
    assert loaded_head.steps == head.steps
    assert int(loaded_head.step.numpy()) == int(head.step.numpy()) == 10
    np.testing.assert_array_equal(pruning_mask(loaded_head), pruning_mask(head))
    np.testing.assert_allclose(
        loaded.predict(x_test[:16], verbose=0), pruned.predict(x_test[:16], verbose=0), atol=1e-6
    )
    zeros = pruning_mask(loaded_head) == 0
    loaded.fit(x[:640], y[:640], epochs=1, batch_size=64, verbose=0)  # resumes at step 10
    assert int(loaded_head.step.numpy()) == 20
    assert np.all(pruning_mask(loaded_head)[zeros] == 0)  # pruned weights stay pruned
    assert float(1 - pruning_mask(loaded_head).mean()) == pytest.approx(0.5, abs=0.01)

    clustered = compile_classifier(kopt.cluster(trained_residual, 8))
    clustered.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    path = tmp_path / "clustered.keras"
    clustered.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        loaded.get_layer("head").centroids["kernel"].numpy(),
        clustered.get_layer("head").centroids["kernel"].numpy(),
    )
    loaded.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    assert np.unique(kopt.strip(loaded).get_layer("head").get_weights()[0]).size <= 8


def test_the_plan_survives_clone_model_and_deep_copies(trained_residual):
    pruned = kopt.prune(trained_residual, 0.6, end=30, frequency=5)
    clone = keras.models.clone_model(pruned)
    assert type(clone).__name__ == "PrunedModel"
    assert clone.get_layer("head").plan == pruned.get_layer("head").plan
    assert clone.get_layer("head").steps == pruned.get_layer("head").steps
    config = copy.deepcopy(pruned.get_layer("head").get_config())
    assert config["plan"]["target"] == 0.6
    assert config["steps"] == {"begin": 0, "end": 30, "frequency": 5}
    clustered = kopt.cluster(trained_residual, 8, per_channel=True)
    clone = keras.models.clone_model(clustered)
    assert clone.get_layer("res_conv").get_config()["per_channel"] is True


def _tflite_kernels(model):
    """Kernels read back from a float32 .tflite conversion of ``model``."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(
        model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert()
    )
    interpreter.allocate_tensors()
    out = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
            out.append(interpreter.get_tensor(int(op["inputs"][1])))
    return out


def test_sparsity_and_clusters_are_read_back_from_the_tflite_file(trained_residual, digits):
    x, y, _, _ = digits
    pruned = compile_classifier(kopt.prune(trained_residual, target_sparsity=0.8))
    pruned.fit(x[:640], y[:640], epochs=2, batch_size=64, verbose=0)
    kernels = _tflite_kernels(kopt.strip(pruned))
    assert len(kernels) == 3
    for values in kernels:
        assert np.mean(values == 0) == pytest.approx(0.8, abs=0.01)

    clustered = compile_classifier(kopt.cluster(trained_residual, 16, per_channel=True))
    clustered.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    kernels = _tflite_kernels(kopt.strip(clustered))
    assert len(kernels) == 3
    for values in kernels:  # TFLite stores conv kernels OHWI and FC weights (out, in)
        assert max(np.unique(row).size for row in values.reshape(values.shape[0], -1)) <= 16


def test_stripped_model_loads_without_keras_opt(trained_residual, digits, tmp_path):
    x, y, _, _ = digits
    pruned = compile_classifier(kopt.prune(trained_residual, target_sparsity=0.5))
    pruned.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    clustered = kopt.strip(compile_classifier(kopt.cluster(kopt.strip(pruned), 8)))
    clustered.save(tmp_path / "small.keras")
    script = (
        "import sys, keras\n"
        f"m = keras.models.load_model({str(tmp_path / 'small.keras')!r})\n"
        "assert not [k for k in sys.modules if k.startswith('keras_opt')]\n"
        "print(sorted({type(layer).__module__.split('.')[0] for layer in m.layers}))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "0"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "['keras']"


def test_a_tf_keras_model_is_refused_under_keras3():
    import tf_keras

    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)])
    for call in (lambda: kopt.prune(model, 0.5), lambda: kopt.cluster(model, 4)):
        with pytest.raises(TypeError, match="It is a tf_keras model"):
            call()


def test_bad_wrapper_arguments_are_refused(trained_residual):
    from keras_opt.optimization._native import ClusterWeights, PruneLowMagnitude

    with pytest.raises(ValueError, match="has no weights that can be pruned"):
        PruneLowMagnitude(keras.layers.ReLU(), plan={"schedule": "constant", "target": 0.5})
    with pytest.raises(ValueError, match="has no weights that can be clustered"):
        ClusterWeights(keras.layers.ReLU(), 4)
    with pytest.raises(ValueError, match="2:4 sparsity groups 4 input channels"):
        kopt.prune(build_residual_cnn(), structured="2:4", layers=["stem"])


def test_stripped_models_go_through_keras_opt_tflite_export(trained_residual, digits, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    import keras_opt.tflite

    x, y, x_test, y_test = digits
    pruned = compile_classifier(kopt.prune(trained_residual, target_sparsity=0.8))
    pruned.fit(x[:640], y[:640], epochs=2, batch_size=64, verbose=0)
    clustered = compile_classifier(
        kopt.cluster(kopt.strip(pruned), 8, per_channel=True, preserve_sparsity=True)
    )
    clustered.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    result = keras_opt.tflite.export(
        kopt.strip(clustered),
        str(tmp_path / "out"),
        representative_data=x[:100],
        eval_data=(x_test, y_test),
        variants=["float32", "int8"],
        runs=2,
        isolation="none",
    )
    assert not result.failed
    for variant in ("float32", "int8"):
        interpreter = Interpreter(model_path=str(tmp_path / "out" / f"{variant}.tflite"))
        interpreter.allocate_tensors()
        for op in interpreter._get_ops_details():
            if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
                kernel = interpreter.get_tensor(int(op["inputs"][1]))
                assert np.mean(kernel == 0) == pytest.approx(0.8, abs=0.01), variant
                rows = kernel.reshape(kernel.shape[0], -1)
                assert max(np.unique(row).size for row in rows) <= 8, variant
