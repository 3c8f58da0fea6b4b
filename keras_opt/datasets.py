"""Small real data that ships with scikit-learn, ready for Keras: no download.

The demo, the examples and the test suite share these, so that what a user
runs and what the tests check are the same data and the same model.

Example:
    >>> from keras_opt import datasets
    >>> x_train, y_train, x_test, y_test = datasets.digits()
    >>> x_train.shape, x_test.shape
    ((1400, 8, 8, 1), (397, 8, 8, 1))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_opt import _validation

__all__ = ["digits", "digits_dataset", "digits_cnn"]


def digits(seed: int | None = 0, train_size: int = 1400) -> tuple[np.ndarray, ...]:
    """sklearn's 1,797 8x8 handwritten digits as Keras-ready arrays.

    Args:
        seed: Integer or None. Shuffles the samples before the split with
            ``numpy.random.RandomState(seed)``; None keeps sklearn's order.
        train_size: Integer in [1, 1796]. Samples in the training split.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: images ``float32`` in [0, 1]
        shaped ``(n, 8, 8, 1)``, labels ``int64`` in 0..9.

    Raises:
        ValueError: for a ``train_size`` that leaves no training or test sample.

    Example:
        >>> from keras_opt.datasets import digits
        >>> x, y, _, _ = digits(seed=None, train_size=10)
        >>> x.dtype.name, int(y[0]), float(x.max()) <= 1.0
        ('float32', 0, True)
    """
    from sklearn.datasets import load_digits

    _validation.integer("seed", seed, minimum=0, allow_none=True)
    _validation.integer("train_size", train_size, minimum=1)
    d = load_digits()
    if train_size >= len(d.target):
        _validation.fail("train_size", f"< {len(d.target)} (the number of digits)", train_size)
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int64")
    if seed is not None:
        idx = np.random.RandomState(seed).permutation(len(x))
        x, y = x[idx], y[idx]
    return x[:train_size], y[:train_size], x[train_size:], y[train_size:]


def digits_dataset(
    batch_size: int = 32, seed: int | None = 0, train_size: int = 1400
) -> tuple[Any, Any]:
    """`digits` as two batched ``tf.data.Dataset`` (train shuffled every epoch, test not).

    Args:
        batch_size: Integer >= 1.
        seed: Integer or None, as for `digits` (also seeds the shuffle).
        train_size: Integer, as for `digits`.

    Returns:
        ``(train, test)`` datasets of ``(image, label)`` batches, prefetched.

    Example:
        >>> from keras_opt.datasets import digits_dataset
        >>> train, test = digits_dataset(batch_size=64)
        >>> tuple(next(iter(train))[0].shape)
        (64, 8, 8, 1)
    """
    import tensorflow as tf

    _validation.integer("batch_size", batch_size, minimum=1)
    x_train, y_train, x_test, y_test = digits(seed, train_size)
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(batch_size)
    return train, test.prefetch(tf.data.AUTOTUNE)


def digits_cnn(seed: int = 0, compile: bool = True) -> Any:
    """The demo's CNN for `digits`: Conv + BatchNorm stem, a residual block, a Dense head.

    Args:
        seed: Integer. ``keras.utils.set_random_seed`` before the layers are made.
        compile: Boolean. Compile with Adam(1e-3), sparse categorical
            cross-entropy and accuracy.

    Returns:
        A Functional model of the Keras flavor in use (``keras_opt.backend``).

    Example:
        >>> from keras_opt.datasets import digits_cnn
        >>> model = digits_cnn()
        >>> model.output_shape
        (None, 10)
    """
    from keras_opt.backend import keras

    _validation.integer("seed", seed, minimum=0)
    if not isinstance(compile, bool):
        _validation.fail("compile", "a boolean", compile, exc=TypeError)
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    r = layers.Conv2D(16, 3, padding="same", name="res_conv")(x)
    r = layers.BatchNormalization(momentum=0.9, name="res_bn")(r)
    x = layers.ReLU(name="res_relu")(layers.Add(name="res_add")([x, r]))
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(32, activation="relu", name="fc")(x)
    outputs = layers.Dense(10, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    if compile:
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model
