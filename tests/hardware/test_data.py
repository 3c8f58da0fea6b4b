"""Global batch, the linear LR rule and the tf.data pipeline helper."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_opt import hardware


def test_global_batch_is_per_replica_times_replicas():
    assert hardware.global_batch_size(64, 8) == 512
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert hardware.global_batch_size(64, mirrored) == 64
    assert hardware.global_batch_size(16) == 16  # current (default) strategy


@pytest.mark.parametrize(
    ("args", "exc", "fragment"),
    [
        ((0, 2), ValueError, "Argument `per_replica_batch_size` must be >= 1. Received: "),
        ((8, 0), ValueError, "Argument `strategy` must be >= 1"),
        ((8.5, 2), TypeError, "Argument `per_replica_batch_size` must be an integer"),
    ],
)
def test_global_batch_errors(args, exc, fragment):
    with pytest.raises(exc, match=fragment):
        hardware.global_batch_size(*args)


def test_linear_scaling_rule():
    assert hardware.scale_learning_rate(0.1, 1024, 256) == pytest.approx(0.4)
    assert hardware.scale_learning_rate(0.1, 128, 256) == pytest.approx(0.05)
    replicas = 8
    lr = hardware.scale_learning_rate(1e-3, hardware.global_batch_size(32, replicas), 32)
    assert lr == pytest.approx(8e-3)
    with pytest.raises(ValueError, match="Argument `base_learning_rate` must be > 0"):
        hardware.scale_learning_rate(-1.0, 64, 32)


def test_prepare_dataset_batches_globally_and_sets_shard_policy(digits):
    x, y, _, _ = digits
    ds = hardware.prepare_dataset(
        (x[:100], y[:100]), strategy=4, per_replica_batch_size=8, shard_policy="data"
    )
    sizes = [int(b[0].shape[0]) for b in ds]
    assert sizes == [32, 32, 32, 4]
    assert ds.options().experimental_distribute.auto_shard_policy == (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    dropped = hardware.prepare_dataset((x[:100], y[:100]), 4, 8, drop_remainder=True)
    assert [int(b[0].shape[0]) for b in dropped] == [32, 32, 32]


def test_prepare_dataset_shuffles_reproducibly_and_keeps_every_sample(digits):
    _, y, _, _ = digits
    raw = tf.data.Dataset.from_tensor_slices(y[:50])
    a = np.concatenate(list(hardware.prepare_dataset(raw, 1, 10, shuffle_buffer=50, seed=1)))
    b = np.concatenate(list(hardware.prepare_dataset(raw, 1, 10, shuffle_buffer=50, seed=1)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, y[:50])
    np.testing.assert_array_equal(np.sort(a), np.sort(y[:50]))


def test_prepare_dataset_file_cache(tmp_path, digits):
    x, _, _, _ = digits
    ds = hardware.prepare_dataset((x[:20],), per_replica_batch_size=10, cache=str(tmp_path / "c"))
    assert sum(int(b[0].shape[0]) for b in ds) == 20
    assert list(tmp_path.iterdir())  # the cache files were written


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"data": [1, 2]}, TypeError, "Argument `data` must be a tf.data.Dataset or a tuple"),
        ({"shard_policy": "rows"}, ValueError, "Argument `shard_policy` must be one of 'auto'"),
        ({"cache": 1}, TypeError, "Argument `cache` must be True, False or a file path"),
        ({"shuffle_buffer": 0}, ValueError, "Argument `shuffle_buffer` must be >= 1"),
    ],
)
def test_prepare_dataset_errors(kwargs, exc, fragment):
    kwargs = {"data": (np.zeros(4),), **kwargs}
    with pytest.raises(exc, match=fragment):
        hardware.prepare_dataset(**kwargs)
