"""LRScheduler and the in-graph schedules under MirroredStrategy on two logical CPUs.

Logical devices must be configured before TensorFlow initializes its runtime,
so the run happens in a fresh subprocess (same Keras flavor as this run).
"""

from __future__ import annotations

import textwrap

import pytest

from tests._fresh_process import run_script

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    from keras_opt.backend import keras
    from keras_opt.callbacks import LRScheduler
    from keras_opt.schedules import OneCycle, WarmupDecay

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            opt = self.model.optimizer
            self.seen.append((float(opt._learning_rate(opt.iterations)), float(opt.momentum)))
        def on_train_begin(self, logs=None):
            self.seen = []

    x = np.random.RandomState(0).rand(64, 6).astype("float32")
    y = (x.sum(1) > 3).astype("int64")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
    probe = Probe()
    h = model.fit(x, y, batch_size=16, epochs=2, verbose=0,
                  callbacks=[LRScheduler(OneCycle(max_lr=0.1)), probe])
    with strategy.scope():
        m2 = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
        schedule = WarmupDecay(0.01, total_steps=8, warmup_steps=2)
        m2.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    m2.fit(x, np.zeros((64, 2), "float32"), batch_size=16, epochs=1, verbose=0)
    print("RESULT" + json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "seen": probe.seen,
        "logged_lr": h.history["learning_rate"],
        "iterations": int(model.optimizer.iterations.numpy()),
        "graph_iterations": int(m2.optimizer.iterations.numpy()),
        "finite": bool(all(np.isfinite(w).all() for w in model.get_weights())),
    }))
    """
)


@pytest.mark.slow
def test_scheduler_under_mirrored_strategy_on_two_logical_cpus():
    from keras_opt.schedules import OneCycle

    result = run_script(SCRIPT, two_cpus=True)
    assert result["replicas"] == 2
    assert result["finite"]
    steps = 64 // 16
    assert result["iterations"] == 2 * steps
    assert result["graph_iterations"] == steps
    expected = OneCycle(max_lr=0.1, total_steps=2 * steps)
    lrs = [lr for lr, _ in result["seen"]]
    moms = [m for _, m in result["seen"]]
    assert lrs == pytest.approx([expected.lr_at(t) for t in range(2 * steps)], rel=1e-5, abs=1e-8)
    assert moms == pytest.approx(
        [expected.momentum_at(t) for t in range(2 * steps)], rel=1e-5, abs=1e-8
    )
    assert result["logged_lr"] == pytest.approx(
        [expected.lr_at(steps - 1), expected.lr_at(2 * steps - 1)], rel=1e-6
    )
