"""Clustering: at most N distinct values per kernel, centroid inits, errors (both flavors)."""

from __future__ import annotations

import numpy as np
import pytest

import keras_opt.optimization as kopt
from keras_opt import backend
from tests.conftest import build_residual_cnn, compile_classifier
from tests.optimization.conftest import accuracy

KERNELS = ("stem", "res_conv", "head")


@pytest.fixture(scope="module")
def clustered_16(trained_residual, digits):
    x, y, _, _ = digits
    clustered = compile_classifier(kopt.cluster(trained_residual, 16))
    clustered.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return kopt.strip(clustered)


def test_clustering_leaves_at_most_n_values_per_kernel(clustered_16, trained_residual, digits):
    _, _, x_test, y_test = digits
    for name in KERNELS:
        kernel = clustered_16.get_layer(name).get_weights()[0]
        assert 2 <= np.unique(kernel).size <= 16
    assert np.unique(trained_residual.get_layer("head").get_weights()[0]).size > 16
    assert (
        accuracy(clustered_16, x_test, y_test) > accuracy(trained_residual, x_test, y_test) - 0.05
    )


@pytest.mark.parametrize("init", ["kmeans++", "linear", "density", "random"])
def test_every_centroid_init_gives_n_values(trained_residual, init):
    stripped = kopt.strip(kopt.cluster(trained_residual, 4, init=init, layers=["head"]))
    assert np.unique(stripped.get_layer("head").get_weights()[0]).size <= 4
    assert np.unique(stripped.get_layer("res_conv").get_weights()[0]).size > 4


def test_per_channel_clustering_counts_values_per_output_channel(trained_residual):
    layers = ["res_conv"] if backend.is_tf_keras() else ["res_conv", "head"]  # TFMOT: Conv2D only
    stripped = kopt.strip(kopt.cluster(trained_residual, 4, per_channel=True, layers=layers))
    for name in layers:
        kernel = stripped.get_layer(name).get_weights()[0]
        per_channel = [np.unique(kernel[..., c]).size for c in range(kernel.shape[-1])]
        assert max(per_channel) <= 4
        assert np.unique(kernel).size > 4  # the channels have their own centroids


def test_sparsity_preserving_clustering_keeps_the_zeros(trained_residual):
    model = build_residual_cnn()
    model.set_weights(trained_residual.get_weights())
    kernel, bias = model.get_layer("head").get_weights()
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.6)] = 0.0
    model.get_layer("head").set_weights([kernel, bias])
    stripped = kopt.strip(kopt.cluster(model, 8, preserve_sparsity=True, layers=["head"]))
    clustered = stripped.get_layer("head").get_weights()[0]
    assert np.all(clustered[kernel == 0] == 0)
    assert np.unique(clustered).size <= 8


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"number_of_clusters": 1}, ValueError, r"`number_of_clusters` must be >= 2"),
        ({"number_of_clusters": 2.5}, TypeError, r"Received: number_of_clusters=2.5"),
        ({"init": "kmeans"}, ValueError, r"Argument `init` must be one of 'kmeans\+\+'"),
        ({"per_channel": "yes"}, TypeError, "Argument `per_channel`"),
        ({"layers": ["heed"]}, ValueError, r"Received: layers='heed'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    kwargs = {"number_of_clusters": 8, **kwargs}
    with pytest.raises(error, match=match):
        kopt.cluster(build_residual_cnn(), **kwargs)
