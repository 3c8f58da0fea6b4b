"""One script from one CPU to many GPUs, a TPU or several workers, with no code change.

    python examples/distributed_training.py                 # CPU (or every local GPU / a TPU)
    TF_USE_LEGACY_KERAS=1 python examples/distributed_training.py   # same, with tf_keras

Several machines: start the same command on each with its own ``TF_CONFIG``
(see the README, "Multi-worker training"); ``auto_strategy`` then picks
``MultiWorkerMirroredStrategy``, also under Keras 3 (keras_opt works around
keras-team/keras#20585).
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.datasets import load_digits

from keras_opt import hardware
from keras_opt.backend import keras
from keras_opt.callbacks import LRScheduler
from keras_opt.schedules import OneCycle

PER_REPLICA_BATCH = 32
BASE_LR = 1e-3  # tuned for one replica at batch 32


def build_model() -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
    # synchronized: BatchNorm statistics over the global batch, as on one device
    x = keras.layers.BatchNormalization(synchronized=True)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    # float32 output layer: required under mixed precision, harmless otherwise
    outputs = keras.layers.Dense(10, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def main(epochs: int = 2) -> dict:
    strategy = hardware.auto_strategy()  # TPU > TF_CONFIG workers > GPUs > GPU > CPU
    policy = hardware.set_precision("auto")  # bf16 on TPU/Ampere+, fp16 older GPUs, fp32 CPU
    jit = hardware.resolve_jit_compile("auto", strategy=strategy)
    logging.info(hardware.setup_summary(strategy, policy, jit))

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    train = hardware.prepare_dataset(
        (x_train, y_train), strategy, PER_REPLICA_BATCH, shuffle_buffer=1400, seed=0
    )
    global_batch = hardware.global_batch_size(PER_REPLICA_BATCH, strategy)
    max_lr = 10 * hardware.scale_learning_rate(BASE_LR, global_batch, PER_REPLICA_BATCH)

    with strategy.scope():
        model = build_model()
        model.compile(
            optimizer=keras.optimizers.Adam(BASE_LR),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=jit,
        )
    scheduler = LRScheduler(OneCycle(max_lr=max_lr))
    # shuffle=False: the dataset shuffles itself (Keras 3 warns otherwise)
    model.fit(train, epochs=epochs, verbose=2, shuffle=False, callbacks=[scheduler])
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    logging.info("test accuracy %.3f (global batch %d)", accuracy, global_batch)
    return {"accuracy": float(accuracy), "replicas": int(strategy.num_replicas_in_sync)}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = main()
    np.testing.assert_array_less(0.5, result["accuracy"])  # smoke check for CI
