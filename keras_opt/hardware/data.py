"""Batch size, learning-rate scaling and a ``tf.data`` pipeline for a strategy.

**Global batch.** Under a ``tf.distribute`` strategy, the batch that ``fit``
reads from the dataset is the *global* batch; each of the
``num_replicas_in_sync`` replicas gets an equal slice. Keep the per-replica
batch (what fits one device) fixed and batch the dataset with
``per_replica × replicas``.

**Linear LR scaling rule** (Goyal et al., 2017, "Accurate, Large Minibatch
SGD"): when the global batch grows *k*-fold, multiply the learning rate by *k*.
Gradients of a *k*-times larger batch average over *k* times more samples, so
one step of size ``k·lr`` approximates *k* steps of size ``lr``. It holds best
with a few epochs of warm-up (`keras_opt.schedules.WarmupDecay`) and breaks
down for very large batches; adaptive optimizers (Adam) often do better with
the square-root rule, so treat the scaled LR as a starting point to check with
`keras_opt.callbacks.find_lr`.

**Pipeline.** `prepare_dataset` follows the tf.data performance guide: cache
the decoded elements once, shuffle, batch the *global* batch, and prefetch with
``AUTOTUNE`` so input overlaps the training step. The auto-shard policy tells a
multi-worker strategy how to split the data between workers (``"auto"``: by
file when reading files, else by element; ``"data"``: every worker reads
everything and keeps its share of elements; ``"file"``; ``"off"``).

Example:
    >>> from keras_opt.hardware import global_batch_size, scale_learning_rate
    >>> global_batch_size(64, 4)
    256
    >>> scale_learning_rate(0.1, global_batch_size=256, base_batch_size=64)
    0.4
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_opt import _validation as v

__all__ = ["SHARD_POLICIES", "global_batch_size", "scale_learning_rate", "prepare_dataset"]

SHARD_POLICIES = {
    "auto": tf.data.experimental.AutoShardPolicy.AUTO,
    "data": tf.data.experimental.AutoShardPolicy.DATA,
    "file": tf.data.experimental.AutoShardPolicy.FILE,
    "off": tf.data.experimental.AutoShardPolicy.OFF,
}
"""Names accepted by ``prepare_dataset(shard_policy=...)``."""


def _replicas(strategy: Any) -> int:
    if strategy is None:
        return int(tf.distribute.get_strategy().num_replicas_in_sync)
    if isinstance(strategy, tf.distribute.Strategy):
        return int(strategy.num_replicas_in_sync)
    return v.integer("strategy", strategy, minimum=1)  # type: ignore[return-value]


def global_batch_size(per_replica_batch_size: int, strategy: Any = None) -> int:
    """Global batch = per-replica batch × number of replicas.

    Args:
        per_replica_batch_size: Integer >= 1. What one device processes per step.
        strategy: A ``tf.distribute.Strategy``, an integer replica count, or None
            (the current strategy).

    Returns:
        Integer.

    Raises:
        ValueError: if a size or replica count is < 1.

    Example:
        >>> import tensorflow as tf
        >>> from keras_opt.hardware import global_batch_size
        >>> global_batch_size(32, tf.distribute.get_strategy())
        32
    """
    v.integer("per_replica_batch_size", per_replica_batch_size, minimum=1)
    return int(per_replica_batch_size) * _replicas(strategy)


def scale_learning_rate(
    base_learning_rate: float, global_batch_size: int, base_batch_size: int
) -> float:
    """Linear scaling rule: ``lr = base_lr × global_batch / base_batch``.

    Args:
        base_learning_rate: Float > 0. The LR tuned at ``base_batch_size``.
        global_batch_size: Integer >= 1. The global batch you will train with.
        base_batch_size: Integer >= 1. The batch the base LR was tuned for.

    Returns:
        Float.

    Raises:
        ValueError: on a non-positive value.

    Example:
        >>> from keras_opt.hardware import scale_learning_rate
        >>> scale_learning_rate(1e-3, global_batch_size=512, base_batch_size=128)
        0.004
    """
    v.positive("base_learning_rate", base_learning_rate)
    v.integer("global_batch_size", global_batch_size, minimum=1)
    v.integer("base_batch_size", base_batch_size, minimum=1)
    return float(base_learning_rate) * global_batch_size / base_batch_size


def prepare_dataset(
    data: Any,
    strategy: Any = None,
    per_replica_batch_size: int | None = None,
    shuffle_buffer: int | None = None,
    cache: bool | str = True,
    shard_policy: str = "auto",
    drop_remainder: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Build the input pipeline for ``fit`` under ``strategy``.

    Order (tf.data performance guide): ``cache`` → ``shuffle`` → ``batch`` (global
    batch) → ``prefetch(AUTOTUNE)``, with the auto-shard policy set in the
    dataset options. Pass the result to ``model.fit``: Keras distributes it.

    Args:
        data: A ``tf.data.Dataset`` of *unbatched* elements, or a tuple such as
            ``(x, y)`` of arrays (sliced along the first axis).
        strategy: A ``tf.distribute.Strategy``, a replica count, or None (current).
        per_replica_batch_size: Integer >= 1 or None. None leaves the dataset unbatched.
        shuffle_buffer: Integer >= 1 or None (no shuffling).
        cache: True (in memory), False, or a file path prefix for an on-disk cache.
        shard_policy: String. A key of `SHARD_POLICIES`.
        drop_remainder: Boolean. Drop the last partial batch (needed on TPU).
        seed: Integer or None. Shuffle seed.

    Returns:
        A ``tf.data.Dataset``.

    Raises:
        TypeError: if ``data`` is neither a dataset nor a tuple of arrays.
        ValueError: on a bad size or shard policy.

    Example:
        >>> import numpy as np
        >>> from keras_opt.hardware import prepare_dataset
        >>> ds = prepare_dataset((np.zeros((10, 3)), np.zeros(10)), per_replica_batch_size=4)
        >>> [int(x.shape[0]) for x, _ in ds]
        [4, 4, 2]
    """
    if isinstance(data, tf.data.Dataset):
        dataset = data
    elif isinstance(data, tuple) and data:
        dataset = tf.data.Dataset.from_tensor_slices(data)
    else:
        v.fail(
            "data", "a tf.data.Dataset or a tuple of arrays like (x, y)", type(data), exc=TypeError
        )
    v.integer("per_replica_batch_size", per_replica_batch_size, minimum=1, allow_none=True)
    v.integer("shuffle_buffer", shuffle_buffer, minimum=1, allow_none=True)
    if not isinstance(cache, (bool, str)):
        v.fail("cache", "True, False or a file path prefix", cache, exc=TypeError)
    if shard_policy not in SHARD_POLICIES:
        v.fail("shard_policy", "one of " + ", ".join(repr(k) for k in SHARD_POLICIES), shard_policy)
    if cache is not False:
        dataset = dataset.cache() if cache is True else dataset.cache(cache)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if per_replica_batch_size:
        batch = global_batch_size(per_replica_batch_size, strategy)
        dataset = dataset.batch(batch, drop_remainder=bool(drop_remainder))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = SHARD_POLICIES[shard_policy]
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
