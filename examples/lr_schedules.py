"""Story: LR schedules in model.fit — in-graph, or as a callback with momentum and plateaus.

Runs in both Keras flavors on sklearn's digits:

    python examples/lr_schedules.py
    TF_USE_LEGACY_KERAS=1 python examples/lr_schedules.py
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import keras  # noqa: E402
from keras_opt.callbacks import LRScheduler, Plateau  # noqa: E402
from keras_opt.schedules import CosineRestarts, OneCycle, WarmupDecay  # noqa: E402


def build() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def main(epochs: int = 4) -> dict[str, float]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    results = {}

    # 1. In-graph: the schedule is the optimizer's learning rate. Length in steps.
    steps = epochs * ((len(x) + 31) // 32)
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(WarmupDecay(1e-2, total_steps=steps, warmup_steps=20)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    h = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    results["warmup_cosine_in_graph"] = h.history["accuracy"][-1]

    # 2. Callback: one-cycle LR with beta_1 in opposite phase; length from fit.
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    h = model.fit(
        x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[LRScheduler(OneCycle(1e-2))]
    )
    results["one_cycle_callback"] = h.history["accuracy"][-1]
    print("LR per epoch:", [f"{v:.2e}" for v in h.history["learning_rate"]])
    print("beta_1 per epoch:", [f"{v:.3f}" for v in h.history["beta_1"]])

    # 3. SGDR restarts every 1, 2, 4... epochs, scaled down on a validation plateau.
    model = build()
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    scheduler = LRScheduler(
        CosineRestarts(0.05, first_period_epochs=1, period_mult=2.0),
        plateau=Plateau("val_loss", factor=0.5, patience=1),
    )
    h = model.fit(
        x, y, batch_size=32, epochs=epochs, validation_split=0.2, verbose=0, callbacks=[scheduler]
    )
    results["sgdr_plateau_callback"] = h.history["accuracy"][-1]
    for name, acc in results.items():
        print(f"{name:24s} train accuracy {acc:.3f}")
    return results


if __name__ == "__main__":
    main()
