"""Fit-time overhead of every keras_opt callback, next to Keras' own anchors, in both flavors.

One process per Keras flavor (the tf_keras half runs in a subprocess with
``TF_USE_LEGACY_KERAS=1``), the digits CNN of issue 14 (Conv32 + BatchNorm +
ReLU, Conv32, global average pooling, Dense; Adam; batch 32) on sklearn digits.
Each configuration is timed in pairs with plain fit: a fresh model and
fit each, the first epoch (tracing) dropped, the median of the other epochs
kept; a pair runs the two back to back, in ABBA order from round to round, so
that the shared VM's slow phases (seconds long, and invisible as steal or
other processes' CPU) hit both halves alike. A configuration's ratio is the
median over ``--rounds`` pairs of (its epoch time / plain's in the same
pair), with a distribution-free 90% interval for that median (order
statistics: 8 pairs give the 2nd smallest to the 2nd largest). The target is
met when the whole interval is within it, missed when the whole interval is
above it, and noisy otherwise. Process CPU time ratios are reported too.
Configurations:

* anchors: plain fit; a Keras ``CosineDecay`` in the optimizer; an empty
  per-batch Python callback; ``TensorBoard(histogram_freq=1)``;
* each keras_opt callback alone: ``LRScheduler(OneCycle)``, ``TrainingMonitor``,
  ``GradientMonitor`` (every 100 steps), ``ActivationMonitor`` (every epoch),
  ``NaNGuard()``;
* the standard set: ``LRScheduler`` + ``TrainingMonitor`` + ``NaNGuard``.

Writes ``benchmarks/results/callback_overhead.json``. Measured, never asserted.

    python benchmarks/callback_overhead.py [--epochs 3] [--rounds 8] [--repeat-data 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The flavor is fixed when TensorFlow is imported: decide it before anything imports it.
_LEGACY = "--flavor" in sys.argv[:-1] and sys.argv[sys.argv.index("--flavor") + 1] == "tf_keras"
os.environ["TF_USE_LEGACY_KERAS"] = "1" if _LEGACY else "0"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HERE = os.path.dirname(os.path.abspath(__file__))
#: Target ratio per configuration (None: an anchor, measured only).
TARGETS: dict[str, float | None] = {
    "plain": None,
    "keras_schedule": None,
    "empty_batch_callback": None,
    "tensorboard_histograms": None,
    "lr_scheduler": 1.02,
    "training_monitor": 1.03,
    "gradient_monitor": 1.05,
    "activation_monitor": 1.05,
    "nan_guard": 1.02,
    "standard_set": 1.03,
}
LABELS = {
    "plain": "plain fit",
    "keras_schedule": "Keras CosineDecay in the optimizer (anchor)",
    "empty_batch_callback": "an empty per-batch Python callback (anchor)",
    "tensorboard_histograms": "TensorBoard(histogram_freq=1) (anchor)",
    "lr_scheduler": "LRScheduler(OneCycle)",
    "training_monitor": "TrainingMonitor()",
    "gradient_monitor": "GradientMonitor(probe), every 100 steps",
    "activation_monitor": "ActivationMonitor(probe), every epoch",
    "nan_guard": "NaNGuard()",
    "standard_set": "LRScheduler + TrainingMonitor + NaNGuard",
}


INTERVAL_COVERAGE = 0.9


def median_interval(
    values: list[float], coverage: float = INTERVAL_COVERAGE
) -> tuple[float, float]:
    """Distribution-free interval for the median: order statistics (binomial, no normality).

    The k-th smallest and k-th largest of n values bracket the median with probability
    1 - 2 P(Bin(n, 1/2) < k); k is the largest that keeps that at least ``coverage``.
    """
    ordered = sorted(values)
    n = len(ordered)
    k, tail = 1, 0.0
    while True:
        tail += math.comb(n, k - 1) / 2**n  # P(Bin(n, 1/2) <= k - 1)
        if 1 - 2 * tail < coverage or k > n // 2:
            break
        k += 1
    k = max(1, k - 1)
    return ordered[k - 1], ordered[n - k]


def _spread(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / statistics.median(values)


def measure(
    epochs: int, rounds: int, batch_size: int, only: list[str] | None, repeat_data: int = 1
) -> dict:
    """Run the alternating rounds in this process's flavor; return the result dict."""
    import numpy as np
    from _common import EpochTimer
    from _machine import Window
    from sklearn.datasets import load_digits

    from keras_opt.backend import flavor, keras
    from keras_opt.callbacks import (
        ActivationMonitor,
        GradientMonitor,
        LRScheduler,
        NaNGuard,
        TrainingMonitor,
    )
    from keras_opt.schedules import OneCycle

    d = load_digits()
    x = np.tile((d.images / 16.0).astype("float32")[..., None], (repeat_data, 1, 1, 1))
    y = np.tile(d.target.astype("int64"), repeat_data)
    steps = int(np.ceil(len(x) / batch_size))
    probe = (x[:batch_size], y[:batch_size])
    logs = tempfile.mkdtemp(prefix="keras_opt_bench_tb_")

    class EmptyBatchCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    def build(lr):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(32, 3, padding="same"),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def configure(name):
        lr, callbacks = 1e-3, []
        if name == "keras_schedule":
            lr = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=epochs * steps)
        elif name == "empty_batch_callback":
            callbacks = [EmptyBatchCallback()]
        elif name == "tensorboard_histograms":
            callbacks = [keras.callbacks.TensorBoard(log_dir=logs, histogram_freq=1)]
        elif name == "lr_scheduler":
            callbacks = [LRScheduler(OneCycle(max_lr=1e-2))]
        elif name == "training_monitor":
            callbacks = [TrainingMonitor()]
        elif name == "gradient_monitor":
            callbacks = [GradientMonitor(probe=probe)]
        elif name == "activation_monitor":
            callbacks = [ActivationMonitor(probe=x[:256])]
        elif name == "nan_guard":
            callbacks = [NaNGuard()]
        elif name == "standard_set":
            callbacks = [LRScheduler(OneCycle(max_lr=1e-2)), TrainingMonitor(), NaNGuard()]
        return build(lr), callbacks

    names = [n for n in TARGETS if only is None or n in only or n == "plain"]
    loads = []

    def timed_fit(name: str, r: int) -> tuple[float, float]:
        """One fresh fit of ``name``; its measured epochs' median wall and CPU time."""
        model, callbacks = configure(name)
        timer = EpochTimer()
        with Window() as window:
            model.fit(
                x, y, batch_size=batch_size, epochs=epochs, callbacks=[*callbacks, timer], verbose=0
            )
        w = window.record
        loads.append(
            {
                "config": name,
                "round": r,
                "load_1min_before": w["load_average_1min_before"],
                "load_1min_after": w["load_average_1min_after"],
                "cpu_wall_ratio": w["own_cores_used"],
                "other_processes_cores_used": w["other_processes_cores_used"],
                "steal_cores": w["steal_cores"],
            }
        )
        return statistics.median(timer.times[1:]), statistics.median(timer.cpu_times[1:])

    others = [n for n in names if n != "plain"]
    pairs: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in others}
    for r in range(rounds):
        order = others[r % len(others) :] + others[: r % len(others)]
        for name in order:
            # Each configuration is timed next to its own plain fit, in ABBA order, so that the
            # machine's slow phases (seconds long on a shared VM) hit both halves of a pair.
            if r % 2 == 0:
                plain, config = timed_fit("plain", r), timed_fit(name, r)
            else:
                config, plain = timed_fit(name, r), timed_fit("plain", r)
            pairs[name].append((*config, *plain))
    configs = {}
    for name in others:
        ratios = [w / pw for w, _, pw, _ in pairs[name]]
        cpu_ratios = [c / pc for _, c, _, pc in pairs[name]]
        low, high = median_interval(ratios)
        target = TARGETS[name]
        ratio = statistics.median(ratios)
        verdict = None
        if target is not None:
            verdict = "met" if high <= target else "missed" if low > target else "noisy"
        configs[name] = {
            "label": LABELS[name],
            "ratio": ratio,
            "pair_ratios": ratios,
            "interval": [low, high],
            "interval_coverage": INTERVAL_COVERAGE,
            "spread": _spread(ratios),
            "cpu_ratio": statistics.median(cpu_ratios),
            "cpu_pair_ratios": cpu_ratios,
            "median_epoch_s": statistics.median(w for w, _, _, _ in pairs[name]),
            "plain_median_epoch_s": statistics.median(pw for _, _, pw, _ in pairs[name]),
            "target_ratio": target,
            "meets_target": None if target is None else ratio <= target,
            "verdict": verdict,
        }
    return {
        "flavor": flavor(),
        "steps_per_epoch": steps,
        "epochs_per_fit": epochs,
        "epochs_measured_per_fit": epochs - 1,
        "rounds": rounds,
        "configs": configs,
        "load": loads,
        "max_load_1min": max(e["load_1min_before"] for e in loads),
        "min_cpu_wall_ratio": min(e["cpu_wall_ratio"] for e in loads),
        "max_other_processes_cores_used": max(
            (e["other_processes_cores_used"] or 0.0) for e in loads
        ),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="per fit; the first is dropped")
    parser.add_argument("--rounds", type=int, default=8, help="pairs per configuration")
    parser.add_argument(
        "--repeat-data", type=int, default=1, help="copies of the digits in one epoch"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--flavor", choices=("both", "keras3", "tf_keras"), default="both")
    parser.add_argument("--only", default=None, help="comma-separated configurations")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "callback_overhead.json"))
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"Argument `--epochs` must be >= 2. Received: --epochs={args.epochs}")
    only = None if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = sorted(set(only or []) - set(TARGETS))
    if unknown:
        parser.error(
            f"Argument `--only` must name configurations among {', '.join(TARGETS)}. "
            f"Received: --only={args.only!r}"
        )

    from _common import write_result

    if args.flavor != "both":
        return write_result(
            measure(args.epochs, args.rounds, args.batch_size, only, args.repeat_data), args.out
        )
    # Keras 3 here; tf_keras in a fresh process (the flavor is fixed at import).
    legacy_out = args.out + ".tf_keras.json"
    cmd = [sys.executable, os.path.abspath(__file__), "--flavor", "tf_keras", "--out", legacy_out]
    cmd += ["--epochs", str(args.epochs), "--rounds", str(args.rounds)]
    cmd += ["--repeat-data", str(args.repeat_data)]
    cmd += ["--batch-size", str(args.batch_size)] + (["--only", args.only] if args.only else [])
    keras3 = measure(args.epochs, args.rounds, args.batch_size, only, args.repeat_data)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the tf_keras half failed:\n{proc.stderr[-3000:]}")
    with open(legacy_out) as f:
        legacy = json.load(f)
    os.remove(legacy_out)
    result = {
        "benchmark": "callback_overhead",
        "model": f"digits CNN: Conv32+BN+ReLU, Conv32, GAP, Dense; Adam; batch {args.batch_size}",
        "ratio_definition": "median over rounds of (median epoch time / plain fit's, same round)",
        "spread_definition": "(max - min) / median of the round ratios",
        "cpus": os.cpu_count(),
        "flavors": {"keras3": keras3, "tf_keras": legacy},
    }
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
