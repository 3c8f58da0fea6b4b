"""Subprocess entry points for the real distributed tests (not collected by pytest).

``python -m tests.hardware._workers mirrored OUT.json`` splits the CPU into two
logical devices (which must happen before TensorFlow initializes its devices,
hence a fresh process) and compares MirroredStrategy training with
single-device training on the same global batch.

``python -m tests.hardware._workers multi_worker OUT.npz`` is one worker of a
MultiWorkerMirroredStrategy cluster described by ``TF_CONFIG``.
"""

from __future__ import annotations

import json
import os
import sys

GLOBAL_BATCH = 32
SAMPLES = 256


def _data():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:SAMPLES] / 16.0).astype("float32")[..., None]
    y = d.target[:SAMPLES].astype("int64")
    return x, y


def _build(kind, seed=0):
    """Conv + synchronized BatchNorm models (Sequential, or Functional with a residual add).

    ``synchronized=True`` makes BatchNorm use the global batch's statistics
    under a strategy; without it each replica normalizes its own slice and
    training cannot match single-device training exactly.
    """
    from keras_opt.backend import keras

    keras.utils.set_random_seed(seed)
    bn = {"synchronized": True}
    if kind == "sequential":
        return keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(8, 3, padding="same"),
                keras.layers.BatchNormalization(**bn),
                keras.layers.ReLU(),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(**bn)(x)
    x = keras.layers.ReLU()(x)
    r = keras.layers.Conv2D(8, 3, padding="same")(x)
    r = keras.layers.BatchNormalization(**bn)(r)
    x = keras.layers.ReLU()(keras.layers.Add()([x, r]))
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def _train(strategy, kind, dataset, epochs=2):
    from keras_opt.backend import keras
    from keras_opt.callbacks import LRScheduler
    from keras_opt.schedules import OneCycle

    with strategy.scope():
        model = _build(kind)
        model.compile(
            optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    scheduler = LRScheduler(OneCycle(max_lr=0.1))
    history = model.fit(dataset, epochs=epochs, verbose=0, callbacks=[scheduler])
    return model, history.history


def mirrored(out_path):
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_opt import hardware

    x, y = _data()
    result = {}
    for kind in ("sequential", "functional"):
        strategy = hardware.auto_strategy("mirrored")
        ds = hardware.prepare_dataset((x, y), strategy, per_replica_batch_size=GLOBAL_BATCH // 2)
        multi, hist_multi = _train(strategy, kind, ds)
        single_strategy = hardware.auto_strategy("default")
        ds1 = hardware.prepare_dataset((x, y), single_strategy, per_replica_batch_size=GLOBAL_BATCH)
        single, hist_single = _train(single_strategy, kind, ds1)
        diffs = [
            float(np.max(np.abs(a - b)))
            for a, b in zip(multi.get_weights(), single.get_weights(), strict=True)
        ]
        moved = float(
            max(
                np.max(np.abs(a - b))
                for a, b in zip(single.get_weights(), _build(kind).get_weights(), strict=True)
            )
        )
        result[kind] = {
            "replicas": int(strategy.num_replicas_in_sync),
            "max_weight_diff": max(diffs),
            "weights_moved": moved,
            "loss_multi": hist_multi["loss"],
            "loss_single": hist_single["loss"],
            "lr_multi": hist_multi["learning_rate"],
            "lr_single": hist_single["learning_rate"],
            "momentum_multi": hist_multi["momentum"],
            "summary": hardware.setup_summary(strategy),
        }
    with open(out_path, "w") as f:
        json.dump(result, f)


def multi_worker(out_path):
    import numpy as np

    from keras_opt import hardware
    from keras_opt.hardware.strategy import check_strategy

    strategy = hardware.auto_strategy()
    check_strategy(strategy)
    x, y = _data()
    ds = hardware.prepare_dataset(
        (x, y), strategy, per_replica_batch_size=GLOBAL_BATCH // 2, shard_policy="data"
    )
    model, history = _train(strategy, "functional", ds)
    np.savez(
        out_path,
        *model.get_weights(),
        meta=json.dumps(
            {
                "strategy": type(strategy).__name__,
                "replicas": int(strategy.num_replicas_in_sync),
                "summary": hardware.setup_summary(strategy),
                "history": history,
            }
        ),
    )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    {"mirrored": mirrored, "multi_worker": multi_worker}[sys.argv[1]](sys.argv[2])
