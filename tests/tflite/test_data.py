"""Representative/eval data: arrays, datasets, generators, .npz files, multi-input models."""

from __future__ import annotations

import numpy as np
import pytest

from keras_opt.tflite._data import InputSpec, collect_inputs, input_specs, load_npz

IMAGE = [InputSpec("image", (8, 8, 1), "float32")]
TWO = [InputSpec("a", (3,), "float32"), InputSpec("b", (2,), "float32")]


def test_arrays_tuples_and_single_samples():
    x = np.arange(5 * 64, dtype="float32").reshape(5, 8, 8, 1)
    (xs,), y = collect_inputs(x, IMAGE)
    np.testing.assert_array_equal(xs, x)
    assert y is None
    (xs,), y = collect_inputs((x, np.arange(5)), IMAGE, max_samples=3)
    assert xs.shape == (3, 8, 8, 1)
    assert y.tolist() == [0, 1, 2]
    (xs,), _ = collect_inputs(x.astype("float64"), IMAGE)
    assert xs.dtype == np.float32


def test_dataset_and_generators():
    import tensorflow as tf

    x = np.random.RandomState(0).rand(10, 8, 8, 1).astype("float32")
    y = np.arange(10)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    (xs,), ys = collect_inputs(ds, IMAGE)
    np.testing.assert_allclose(xs, x)
    assert ys.tolist() == list(range(10))
    unbatched = tf.data.Dataset.from_tensor_slices(x)
    (xs,), _ = collect_inputs(unbatched, IMAGE, max_samples=7)
    assert xs.shape == (7, 8, 8, 1)

    def gen():
        for i in range(10):
            yield x[i]

    (xs,), _ = collect_inputs(gen, IMAGE)
    np.testing.assert_allclose(xs, x)
    (xs,), _ = collect_inputs(gen(), IMAGE, max_samples=2)
    assert xs.shape[0] == 2


def test_multi_input_by_name_and_position():
    a, b = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    xs, _ = collect_inputs({"b": b, "a": a}, TWO)
    assert [v.shape for v in xs] == [(4, 3), (4, 2)]
    xs, y = collect_inputs(([a, b], np.arange(4)), TWO)
    assert xs[1].shape == (4, 2)
    assert y.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="Missing: b"):
        collect_inputs({"a": a}, TWO)
    with pytest.raises(ValueError, match="must provide 2 arrays"):
        collect_inputs(a, TWO)


def test_shape_dtype_and_empty_errors():
    with pytest.raises(
        ValueError, match=r"expected \(batch, 8, 8, 1\). Received shape=\(2, 8, 8\)"
    ):
        collect_inputs(np.zeros((2, 8, 8), "float32"), IMAGE)
    with pytest.raises(TypeError, match="must be floating point"):
        collect_inputs(np.zeros((2, 8, 8, 1), "uint8"), IMAGE)
    with pytest.raises(TypeError, match="must hold numbers"):
        collect_inputs(np.array([["a"] * 8] * 8)[None, ..., None], IMAGE)
    with pytest.raises(ValueError, match="holds no samples"):
        collect_inputs(iter([]), IMAGE)
    with pytest.raises(TypeError, match="must be numpy arrays, a tf.data.Dataset"):
        collect_inputs(3.0, IMAGE)


def test_load_npz(tmp_path):
    x = np.zeros((3, 8, 8, 1), "float32")
    np.savez(tmp_path / "xy.npz", x=x, y=np.arange(3))
    xd, y = load_npz(tmp_path / "xy.npz", IMAGE)
    assert xd["image"].shape == (3, 8, 8, 1)
    assert y.tolist() == [0, 1, 2]
    np.savez(tmp_path / "named.npz", a=np.ones((2, 3)), b=np.ones((2, 2)))
    xd, y = load_npz(tmp_path / "named.npz", TWO)
    assert sorted(xd) == ["a", "b"]
    assert y is None
    np.savez(tmp_path / "wrong.npz", z=x)
    with pytest.raises(ValueError, match=r"named after the model inputs \(image\) or `x`"):
        load_npz(tmp_path / "wrong.npz", IMAGE)
    (tmp_path / "junk.npz").write_text("junk")
    with pytest.raises(ValueError, match="Could not read"):
        load_npz(tmp_path / "junk.npz", IMAGE)


def test_input_specs_of_a_model():
    from keras_opt.backend import keras

    a = keras.Input((3,), name="a")
    b = keras.Input((None, 2), name="b")
    pooled = keras.layers.GlobalAveragePooling1D()(b)
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([a, pooled]))
    specs = input_specs(keras.Model([a, b], out))
    assert specs == [InputSpec("a", (3,), "float32"), InputSpec("b", (None, 2), "float32")]


def test_multi_input_model_exports_and_calibrates(tmp_path):
    from keras_opt.backend import keras
    from keras_opt.tflite import export

    keras.utils.set_random_seed(0)
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b")
    h = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([a, b]))
    model = keras.Model([a, b], keras.layers.Dense(4, activation="softmax")(h), name="two_in")
    rng = np.random.RandomState(0)
    data = {"a": rng.rand(64, 3).astype("float32"), "b": rng.rand(64, 2).astype("float32")}
    y = rng.randint(0, 4, 64)
    result = export(
        model,
        tmp_path,
        variants=["float32", "int8"],
        representative_data=data,
        eval_data=(data, y),
        isolation="none",
        runs=2,
    )
    assert result.failed == {}
    assert result["float32"]["parity"]["max_abs_diff"] < 1e-5, result["float32"]
    assert result["int8"]["parity"]["top1_agreement"] >= 0.9
    names = sorted(d["name"] for d in result["int8"]["inputs"])
    assert names == ["serving_default_a:0", "serving_default_b:0"], result["int8"]
