"""keras_opt.datasets: the shared digits data and demo CNN (both flavors)."""

from __future__ import annotations

import numpy as np
import pytest

from keras_opt import datasets


def test_digits_split_shuffle_and_ranges():
    x, y, xt, yt = datasets.digits(seed=0)
    assert x.shape == (1400, 8, 8, 1)
    assert xt.shape == (397, 8, 8, 1)
    assert float(x.min()) == 0.0
    assert float(x.max()) == 1.0
    assert set(np.unique(y)) == set(range(10))
    plain = datasets.digits(seed=None, train_size=100)[1]
    assert plain[:10].tolist() == list(range(10))  # sklearn's order
    again = datasets.digits(seed=0)[1]
    np.testing.assert_array_equal(again, y)


def test_digits_dataset_batches_and_demo_cnn_trains():
    train, test = datasets.digits_dataset(batch_size=100)
    images, labels = next(iter(train))
    assert tuple(images.shape) == (100, 8, 8, 1)
    assert labels.dtype.name == "int64"
    model = datasets.digits_cnn(seed=0)
    history = model.fit(train, epochs=1, verbose=0, shuffle=False)  # the dataset shuffles
    assert np.isfinite(history.history["loss"][0])
    assert [layer.name for layer in model.layers if layer.weights][:2] == ["stem", "stem_bn"]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: datasets.digits(train_size=0), ValueError, "Argument `train_size` must be >= 1"),
        (lambda: datasets.digits(train_size=1797), ValueError, "Received: train_size=1797"),
        (lambda: datasets.digits(seed=-1), ValueError, "Argument `seed`"),
        (lambda: datasets.digits_dataset(batch_size=0), ValueError, "Argument `batch_size`"),
        (lambda: datasets.digits_cnn(compile="yes"), TypeError, "Argument `compile`"),
    ],
)
def test_bad_arguments_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
