"""`auto_strategy`: pick the right ``tf.distribute`` strategy for this machine.

Order of detection (each choice is logged at INFO level with its reason):

1. **TPU** — a TPU hint exists (see `keras_opt.hardware.devices`):
   ``TPUClusterResolver``, connect, initialize, ``TPUStrategy``.
2. **multi-worker** — ``TF_CONFIG`` lists two or more tasks:
   ``MultiWorkerMirroredStrategy``.
3. **several GPUs** — ``MirroredStrategy`` over all of them.
4. **one GPU** — ``OneDeviceStrategy``.
5. otherwise the **default** strategy (one CPU, no distribution).

Keras 3 and multi-worker training: ``fit`` under a plain
``tf.distribute.MultiWorkerMirroredStrategy`` fails in Keras 3.15 with
``ValueError: Attempt to convert a value (PerReplica:...)``
(keras-team/keras#20585, still open). Keras 3 calls ``strategy.reduce`` twice
in ways that strategy rejects: once on a whole ``(x, y)`` batch
(``_maybe_symbolic_build``) and once with ``axis=0`` on scalar metrics
(``reduce_per_replica``). ``auto_strategy`` therefore returns, under Keras 3,
a ``MultiWorkerMirroredStrategy`` subclass whose ``reduce`` accepts nested
structures (reduced element by element) and treats ``axis=0`` on a scalar as
``axis=None`` (the mean over replicas). Nothing else changes: the same
collectives, the same sharding, the same results as tf_keras (the test suite
checks two real processes on 127.0.0.1). `check_strategy` raises a clear error
for a plain ``MultiWorkerMirroredStrategy`` under Keras 3.

Example:
    >>> from keras_opt.hardware import auto_strategy
    >>> strategy = auto_strategy("default")
    >>> strategy.num_replicas_in_sync
    1
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf

from keras_opt import _validation as v
from keras_opt import backend
from keras_opt.hardware import devices as _devices

logger = logging.getLogger(__name__)

__all__ = ["STRATEGY_NAMES", "auto_strategy", "check_strategy", "is_default_strategy"]

STRATEGY_NAMES = ("tpu", "multi_worker", "mirrored", "one_device", "default")
"""Names accepted by ``auto_strategy(name)``."""

KERAS_MULTI_WORKER_BUG = "https://github.com/keras-team/keras/issues/20585"


class _Keras3MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` accepts what Keras 3 passes.

    See the module docstring (keras-team/keras#20585).
    """

    def reduce(self, reduce_op: Any, value: Any, axis: Any) -> Any:
        if value is None:
            return None
        if tf.nest.is_nested(value):
            return tf.nest.map_structure(lambda x: self.reduce(reduce_op, x, axis), value)
        if axis is not None:
            first = self.experimental_local_results(value)[0]
            shape = getattr(first, "shape", None)
            if shape is not None and shape.rank == 0:
                axis = None
        return super().reduce(reduce_op, value, axis)


def is_default_strategy(strategy: Any) -> bool:
    """True for TensorFlow's default (no-op) strategy.

    Args:
        strategy: A ``tf.distribute.Strategy``.

    Returns:
        Boolean.

    Example:
        >>> import tensorflow as tf
        >>> from keras_opt.hardware.strategy import is_default_strategy
        >>> is_default_strategy(tf.distribute.get_strategy())
        True
    """
    return type(strategy).__name__ == "_DefaultDistributionStrategy"


def _tf_config_tasks() -> int:
    """Number of tasks in ``TF_CONFIG`` (0 when unset); clear errors on bad JSON."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return 0
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"The environment variable TF_CONFIG is not valid JSON ({err}). It must look like "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
            f'"index": 0}}. Received: TF_CONFIG={raw[:200]!r}'
        ) from None
    cluster = config.get("cluster", {}) if isinstance(config, dict) else {}
    if not isinstance(cluster, dict):
        raise ValueError(
            f"TF_CONFIG['cluster'] must map job names to address lists. Received: {cluster!r}"
        )
    if "ps" in cluster:
        raise ValueError(
            "TF_CONFIG describes a parameter-server cluster (a 'ps' job). auto_strategy handles "
            "synchronous data parallelism only (MultiWorkerMirroredStrategy); build "
            "tf.distribute.ParameterServerStrategy yourself for parameter servers."
        )
    return sum(len(tasks) for tasks in cluster.values() if isinstance(tasks, list))


def _tpu_strategy(tpu: str | None) -> tf.distribute.Strategy:  # pragma: no cover - TPU only
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _multi_worker_strategy() -> tf.distribute.Strategy:
    if backend.is_tf_keras():
        return tf.distribute.MultiWorkerMirroredStrategy()
    logger.info(
        "Keras 3: using keras_opt's MultiWorkerMirroredStrategy, which works around %s.",
        KERAS_MULTI_WORKER_BUG,
    )
    return _Keras3MultiWorkerMirroredStrategy()


def _gpu_names(found: _devices.Devices) -> list[str]:
    return [f"/gpu:{i}" for i in range(len(found.gpus))]


def _choose(found: _devices.Devices, tasks: int) -> tuple[str, str]:
    if found.kind == "tpu":
        return "tpu", f"a TPU was found ({found.tpu or 'auto-resolved'})"
    if tasks >= 2:
        return "multi_worker", f"TF_CONFIG lists {tasks} tasks"
    if len(found.gpus) >= 2:
        return "mirrored", f"{len(found.gpus)} GPUs were found"
    if len(found.gpus) == 1:
        return "one_device", "one GPU was found"
    return "default", "no TPU, no TF_CONFIG cluster and no GPU: training on the CPU"


def auto_strategy(name: str | None = None) -> tf.distribute.Strategy:
    """Return the ``tf.distribute`` strategy that fits this machine (or the one named).

    Args:
        name: String or None. None detects (TPU, then a ``TF_CONFIG`` cluster of two
            or more tasks, then several GPUs, one GPU, else the default strategy).
            One of `STRATEGY_NAMES` forces that strategy: ``"tpu"``,
            ``"multi_worker"``, ``"mirrored"`` (all GPUs, or every CPU device when
            there is no GPU), ``"one_device"`` (first GPU, else the CPU) or
            ``"default"``.

    Returns:
        A ``tf.distribute.Strategy``. Under Keras 3, ``"multi_worker"`` gives a
        ``MultiWorkerMirroredStrategy`` subclass that works around
        keras-team/keras#20585 (see the module docstring).

    Raises:
        ValueError: on an unknown name, invalid ``TF_CONFIG`` JSON, or a
            parameter-server ``TF_CONFIG``.

    Example:
        >>> from keras_opt.hardware import auto_strategy
        >>> auto_strategy("one_device").num_replicas_in_sync
        1
    """
    if name is not None:
        if not isinstance(name, str):
            v.fail("name", "a string or None", name, exc=TypeError)
        v.one_of("name", name, STRATEGY_NAMES)
    found = _devices.detect_devices()
    if name is None:
        name, reason = _choose(found, _tf_config_tasks())
    else:
        reason = "requested by name"
    logger.info("auto_strategy: %s strategy (%s).", name, reason)
    if name == "tpu":
        return _tpu_strategy(found.tpu)
    if name == "multi_worker":
        return _multi_worker_strategy()
    if name == "mirrored":
        gpus = _gpu_names(found)
        if gpus:
            return tf.distribute.MirroredStrategy(gpus)
        # CPU replicas (logical devices): reduce through one device. The default
        # RING collectives can pair up different tensors across replicas when a
        # step has several all-reduces (e.g. synchronized BatchNorm + gradients).
        cpus = [f"/cpu:{i}" for i in range(max(len(_cpu_logical()), 1))]
        return tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy((_gpu_names(found) or ["/cpu:0"])[0])
    return tf.distribute.get_strategy()


def _cpu_logical() -> list[Any]:
    return list(tf.config.list_logical_devices("CPU"))


def check_strategy(strategy: Any) -> None:
    """Raise a clear error for strategies known to fail with the Keras flavor in use.

    Today that is one case: a plain ``tf.distribute.MultiWorkerMirroredStrategy``
    in a real multi-worker cluster under Keras 3 (keras-team/keras#20585), whose
    ``fit`` fails with an obscure ``PerReplica`` error.

    Args:
        strategy: A ``tf.distribute.Strategy``.

    Returns:
        None.

    Raises:
        TypeError: if ``strategy`` is not a ``tf.distribute.Strategy``.
        RuntimeError: for a plain multi-worker strategy under Keras 3, naming the
            bug and both fixes.

    Example:
        >>> import tensorflow as tf
        >>> from keras_opt.hardware.strategy import check_strategy
        >>> check_strategy(tf.distribute.get_strategy())
    """
    if not isinstance(strategy, tf.distribute.Strategy):
        v.fail("strategy", "a tf.distribute.Strategy", strategy, exc=TypeError)
    if backend.is_tf_keras() or isinstance(strategy, _Keras3MultiWorkerMirroredStrategy):
        return
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.extended._in_multi_worker_mode()
    ):
        raise RuntimeError(
            "Keras 3 `fit` fails under a plain tf.distribute.MultiWorkerMirroredStrategy "
            f"(ValueError: Attempt to convert a value (PerReplica:...); {KERAS_MULTI_WORKER_BUG}). "
            "Create the strategy with `keras_opt.hardware.auto_strategy('multi_worker')`, which "
            "works around the bug, or run with tf_keras: set TF_USE_LEGACY_KERAS=1 before "
            "TensorFlow is imported."
        )
