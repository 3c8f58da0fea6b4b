"""Tuning strategy -> test accuracy on digits, mean +- std over seeds. Measured, never asserted.

An honest version of the classic table. Every strategy trains the same small
CNN (Conv-BN-ReLU, pool, Conv-ReLU, global pool, Dense) with SGD (momentum
0.9) for the same number of epochs and the same peak learning rate, on the
same 1400/397 split of sklearn's digits. The test split is used once, after
the last epoch: no early stopping, no checkpoint picked on it, nothing tuned
on it. Strategies:

* ``fixed_lr``: constant LR;
* ``exponential_decay``: `WarmupDecay(decay="exponential")`, LR / 10 over the run;
* ``cosine_warmup``: `WarmupDecay(decay="cosine")` with a 1-epoch linear warmup;
* ``one_cycle``: `OneCycle` (LR and momentum cycled, PyTorch defaults);
* ``l2``: constant LR with an L2 penalty (1e-4) on every kernel;
* ``larger_batch``: constant LR, batch 128 instead of 32 (4x fewer steps, no
  LR scaling).

Schedules run through `keras_opt.callbacks.LRScheduler`. Writes
``benchmarks/results/tuning_strategies.json``.

    python benchmarks/tuning_strategies.py [--epochs 15] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import flavor, keras  # noqa: E402
from keras_opt.callbacks import LRScheduler  # noqa: E402
from keras_opt.schedules import OneCycle, WarmupDecay  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PEAK_LR = 0.05
BATCH = 32
L2 = 1e-4
STRATEGIES = (
    "fixed_lr",
    "exponential_decay",
    "cosine_warmup",
    "one_cycle",
    "l2",
    "larger_batch",
)


def digits():
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    idx = np.random.RandomState(0).permutation(len(x))
    x, y = x[idx], d.target[idx]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def build(seed: int, l2: float | None = None):
    keras.utils.set_random_seed(seed)
    reg = keras.regularizers.L2(l2) if l2 else None
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", kernel_regularizer=reg),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", kernel_regularizer=reg),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax", kernel_regularizer=reg),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(PEAK_LR, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def setup(strategy: str, epochs: int) -> tuple[dict, list, int]:
    """(build kwargs, callbacks, batch size) of one strategy."""
    if strategy == "exponential_decay":
        sched = WarmupDecay(PEAK_LR, decay="exponential", epochs=epochs, decay_rate=0.1)
        return {}, [LRScheduler(sched)], BATCH
    if strategy == "cosine_warmup":
        sched = WarmupDecay(PEAK_LR, decay="cosine", epochs=epochs, warmup_epochs=1)
        return {}, [LRScheduler(sched)], BATCH
    if strategy == "one_cycle":
        return {}, [LRScheduler(OneCycle(max_lr=PEAK_LR, epochs=epochs))], BATCH
    if strategy == "l2":
        return {"l2": L2}, [], BATCH
    if strategy == "larger_batch":
        return {}, [], 4 * BATCH
    return {}, [], BATCH


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "tuning_strategies.json"))
    args = parser.parse_args(argv)

    x, y, x_test, y_test = digits()
    rows = []
    for strategy in STRATEGIES:
        accs, losses, seconds = [], [], []
        for seed in range(args.seeds):
            build_kwargs, callbacks, batch = setup(strategy, args.epochs)
            model = build(seed, **build_kwargs)
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=args.epochs, callbacks=callbacks, verbose=0)
            seconds.append(time.perf_counter() - start)
            loss, acc = model.evaluate(x_test, y_test, verbose=0)
            accs.append(float(acc))
            losses.append(float(loss))
        row = {
            "strategy": strategy,
            "batch_size": batch,
            "test_accuracy_mean": statistics.fmean(accs),
            "test_accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "test_accuracies": accs,
            "test_loss_mean": statistics.fmean(losses),
            "fit_seconds_mean": statistics.fmean(seconds),
        }
        rows.append(row)
        print(
            f"{strategy:18s} {100 * row['test_accuracy_mean']:6.2f} "
            f"+- {100 * row['test_accuracy_std']:.2f} %  ({row['fit_seconds_mean']:.1f} s/fit)",
            flush=True,
        )
    best = max(rows, key=lambda r: r["test_accuracy_mean"])
    report = {
        "benchmark": "tuning_strategies",
        "flavor": flavor(),
        "data": "sklearn load_digits, 1400 train / 397 test (fixed permutation, seed 0), 8x8x1",
        "model": "Conv32-BN-ReLU, MaxPool, Conv64-ReLU, GlobalAvgPool, Dense10",
        "optimizer": f"SGD(momentum=0.9), peak LR {PEAK_LR}",
        "epochs": args.epochs,
        "seeds": args.seeds,
        "results": rows,
        "best_strategy": best["strategy"],
        "target": "none: measured, never asserted",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    main()
