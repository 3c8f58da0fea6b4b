"""Pruning, clustering and QAT inside a MirroredStrategy over two logical CPUs.

Logical devices must be configured before TensorFlow initializes its devices,
so the check runs in a fresh interpreter.
"""

from __future__ import annotations

import textwrap

import pytest

from tests._fresh_process import run_script

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    import keras_opt.optimization as kopt
    from tests.conftest import build_residual_cnn, compile_classifier
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:128] / 16.0).astype("float32")[..., None]
    y = d.target[:128]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        pruned = compile_classifier(kopt.prune(build_residual_cnn(), target_sparsity=0.5))
    pruned.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=kopt.callbacks(pruned))
    wrapper = pruned.get_layer("prune_low_magnitude_head")
    masks = [np.asarray(v.numpy()) for v in wrapper.pruning_vars[0][1].values]
    steps = [int(v.numpy()) for v in wrapper.pruning_step.values]
    head = kopt.strip(pruned).get_layer("head").get_weights()[0]
    with strategy.scope():
        qat = compile_classifier(kopt.quantize(build_residual_cnn()))
    history = qat.fit(x, y, epochs=1, batch_size=64, verbose=0)
    print("RESULT", json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "masks_equal": bool(np.array_equal(masks[0], masks[1])),
        "mask_sparsity": float(1 - masks[0].mean()),
        "steps": steps,
        "head_sparsity": float(np.mean(head == 0)),
        "qat_loss_finite": bool(np.isfinite(history.history["loss"][-1])),
    }))
    """
)


NATIVE_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    import keras_opt.optimization as kopt
    from tests.conftest import build_residual_cnn, compile_classifier
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:128] / 16.0).astype("float32")[..., None]
    y = d.target[:128]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        pruned = compile_classifier(kopt.prune(build_residual_cnn(), target_sparsity=0.5))
    pruned.fit(x, y, epochs=2, batch_size=64, verbose=0)
    wrapper = pruned.get_layer("head")
    masks = [np.asarray(v.numpy()) for v in wrapper.masks["kernel"].value.values]
    steps = [int(v.numpy()) for v in wrapper.step.value.values]
    head = kopt.strip(pruned).get_layer("head").get_weights()[0]
    with strategy.scope():
        clustered = compile_classifier(kopt.cluster(build_residual_cnn(), 8))
    clustered.fit(x, y, epochs=1, batch_size=64, verbose=0)
    centroids = [np.asarray(v.numpy())
                 for v in clustered.get_layer("head").centroids["kernel"].value.values]
    stripped = kopt.strip(clustered).get_layer("head").get_weights()[0]
    with strategy.scope():
        qat = compile_classifier(kopt.quantize(build_residual_cnn()))
    history = qat.fit(x, y, epochs=1, batch_size=64, verbose=0)
    head_range = qat.get_layer("head").pre_activation_range.max
    ranges = [np.asarray(v.numpy()) for v in head_range.value.values]
    print("RESULT", json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "masks_equal": bool(np.array_equal(masks[0], masks[1])),
        "mask_sparsity": float(1 - masks[0].mean()),
        "steps": steps,
        "head_sparsity": float(np.mean(head == 0)),
        "centroids_equal": bool(np.array_equal(centroids[0], centroids[1])),
        "clustered_values": int(np.unique(stripped).size),
        "qat_loss_finite": bool(np.isfinite(history.history["loss"][-1])),
        "qat_ranges_equal": bool(np.array_equal(ranges[0], ranges[1])),
    }))
    """
)


@pytest.mark.keras3_only
def test_native_prune_cluster_and_qat_under_mirrored_strategy_keep_replicas_identical():
    report = run_script(NATIVE_SCRIPT, legacy=False, two_cpus=True)
    assert report["replicas"] == 2
    assert report["masks_equal"]
    assert report["mask_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report["steps"][0] == report["steps"][1] == 4  # 2 epochs x 2 global steps
    assert report["head_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report["centroids_equal"]
    assert report["clustered_values"] <= 8
    assert report["qat_loss_finite"]
    assert report["qat_ranges_equal"]


@pytest.mark.tf_keras_only
def test_prune_and_qat_under_mirrored_strategy_keep_replicas_consistent():
    report = run_script(SCRIPT, legacy=True, two_cpus=True)
    assert report["replicas"] == 2
    assert report["masks_equal"]
    assert report["mask_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report["steps"][0] == report["steps"][1] == 4  # 2 epochs x 2 global steps
    assert report["head_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report["qat_loss_finite"]
