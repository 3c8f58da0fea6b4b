"""Fit time with and without GradientMonitor at its default frequency (target ratio <= 1.05).

One process, the same residual CNN (Conv + BatchNorm + residual add) and the same
data: plain fit and fit with ``GradientMonitor(probe=<one batch>)`` (default
``every_n_steps=100``) are run in alternation and the median epoch time of each
is compared. The first epoch of every fit is skipped for both (tracing of the
train step and of the probe function). Writes
``benchmarks/results/gradient_monitor_overhead.json``. Measured, never asserted.

    python benchmarks/gradient_monitor_overhead.py [--epochs 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from _common import EpochTimer, write_result  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import flavor  # noqa: E402
from keras_opt.callbacks import GradientMonitor  # noqa: E402
from tests.conftest import build_residual_cnn, compile_classifier  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--out", default=os.path.join(HERE, "results", "gradient_monitor_overhead.json")
    )
    args = parser.parse_args(argv)

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target
    probe = (x[: args.batch_size], y[: args.batch_size])
    plain_times, monitored_times, probes = [], [], 0
    for repeat in range(args.repeats):
        # Alternate which variant goes first, so drifting machine load hits both.
        for with_monitor in (False, True) if repeat % 2 == 0 else (True, False):
            model = compile_classifier(build_residual_cnn())
            timer = EpochTimer()
            callbacks: list = [timer]
            if with_monitor:
                monitor = GradientMonitor(probe=probe)
                callbacks.insert(0, monitor)
            model.fit(
                x, y, batch_size=args.batch_size, epochs=args.epochs, callbacks=callbacks, verbose=0
            )
            if with_monitor:
                probes += len(monitor.records)
            (monitored_times if with_monitor else plain_times).extend(timer.times[1:])
    plain, monitored = statistics.median(plain_times), statistics.median(monitored_times)
    # The minimum is the least noisy estimate on a shared machine (as timeit advises).
    ratio_min = min(monitored_times) / min(plain_times)
    result = {
        "benchmark": "gradient_monitor_overhead",
        "flavor": flavor(),
        "model": "residual CNN (tests/conftest.py build_residual_cnn)",
        "steps_per_epoch": int(np.ceil(len(x) / args.batch_size)),
        "every_n_steps": GradientMonitor(probe=probe).every_n_steps,
        "probes_per_fit": probes / args.repeats,
        "median_epoch_s_plain": plain,
        "median_epoch_s_monitored": monitored,
        "ratio": monitored / plain,
        "ratio_of_min_epoch_times": ratio_min,
        "load_average_1min": os.getloadavg()[0],
        "target_ratio": 1.05,
        "meets_target": monitored / plain <= 1.05,
        "epochs_measured": len(plain_times),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
