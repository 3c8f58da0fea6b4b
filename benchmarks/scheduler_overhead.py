"""Fit time with and without keras_opt's LRScheduler callback (target ratio <= 1.02).

One process, one model architecture, the same data: plain fit and fit with
``LRScheduler(OneCycle(...))`` (LR and beta_1 set every batch) are run in
alternation and the median epoch time of each is compared. Writes
``benchmarks/results/scheduler_overhead.json``. Measured, never asserted.

    python benchmarks/scheduler_overhead.py [--epochs 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from _common import EpochTimer, write_result  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import flavor, keras  # noqa: E402
from keras_opt.callbacks import LRScheduler  # noqa: E402
from keras_opt.schedules import OneCycle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "scheduler_overhead.json"))
    args = parser.parse_args(argv)

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target
    plain_times, sched_times, pair_ratios, cpu_ratios = [], [], [], []
    for repeat in range(args.repeats):
        # Alternate which run goes first, and compare each adjacent pair, so that
        # load drift on a shared machine cancels out instead of biasing one side.
        order = (False, True) if repeat % 2 == 0 else (True, False)
        pair, cpu = {}, {}
        for with_scheduler in order:
            model = build()
            model.fit(x[:64], y[:64], epochs=1, verbose=0)  # trace outside the timing
            timer = EpochTimer()
            callbacks = [timer]
            if with_scheduler:
                callbacks.insert(0, LRScheduler(OneCycle(max_lr=1e-2)))
            model.fit(
                x, y, batch_size=args.batch_size, epochs=args.epochs, callbacks=callbacks, verbose=0
            )
            # First epoch includes re-tracing (the momentum variable); skip it for both.
            (sched_times if with_scheduler else plain_times).extend(timer.times[1:])
            pair[with_scheduler] = statistics.median(timer.times[1:])
            cpu[with_scheduler] = statistics.median(timer.cpu_times[1:])
        pair_ratios.append(pair[True] / pair[False])
        cpu_ratios.append(cpu[True] / cpu[False])
    plain, sched = statistics.median(plain_times), statistics.median(sched_times)
    ratio = statistics.median(pair_ratios)
    result = {
        "benchmark": "scheduler_overhead",
        "flavor": flavor(),
        "steps_per_epoch": int(np.ceil(len(x) / args.batch_size)),
        "median_epoch_s_plain": plain,
        "median_epoch_s_scheduler": sched,
        "ratio": ratio,
        "ratio_definition": "median over alternating pairs of (median epoch with / without)",
        "pair_ratios": pair_ratios,
        "ratio_of_medians": sched / plain,
        "cpu_time_ratio": statistics.median(cpu_ratios),
        "cpu_pair_ratios": cpu_ratios,
        "target_ratio": 1.02,
        "meets_target": ratio <= 1.02,
        "epochs_measured": len(plain_times),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
