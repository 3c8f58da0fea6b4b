"""Fit-time overhead of every keras_opt callback, next to Keras' own anchors, in both flavors.

One process per Keras flavor (the tf_keras half runs in a subprocess with
``TF_USE_LEGACY_KERAS=1``), the digits CNN of issue 14 (Conv32 + BatchNorm +
ReLU, Conv32, global average pooling, Dense; Adam; batch 32) on sklearn digits.

Protocol: interleaved epochs (``_turns.Lanes``). Every configuration is one
fresh model in one long ``fit``, all of them in threads of this process, but
only one running at a time: the main thread hands out turns of one epoch. After
each fit's first epoch (tracing, not measured), round after round, each
configuration's epoch runs next to an epoch of plain fit, in ABBA order from
pair to pair, so that the shared VM's slow phases (seconds long, and invisible
as steal or other processes' CPU) hit both epochs of a pair alike. A
configuration's ratio is the median over ``--rounds`` pairs of (its epoch time
/ plain's epoch time in the same pair), with a distribution-free 90% interval
for that median (order statistics: 24 pairs give the 8th smallest to the 8th
largest). The target is met when the whole interval is within it, missed when
the whole interval is above it, and noisy otherwise. ``us_per_step`` is the
median over pairs of the wall-time difference per step; process CPU time
ratios are reported too. A second plain model (``plain_again``, an A/A
comparison) shows the resolution: its interval is the noise floor.
Configurations:

* anchors: a second plain fit; a Keras ``CosineDecay`` in the optimizer; an
  empty per-batch Python callback; ``TensorBoard(histogram_freq=1)``;
* each keras_opt callback alone: ``LRScheduler(OneCycle)``, ``TrainingMonitor``,
  ``GradientMonitor`` (every 100 steps), ``ActivationMonitor`` (every epoch),
  ``NaNGuard()``;
* the standard set: ``LRScheduler`` + ``TrainingMonitor`` + ``NaNGuard``.

A 2% overhead is below what epoch pairs resolve on a shared VM, so the
targets of NaNGuard and the standard set are also measured step by step
(``nan_guard_step``, ``standard_set_step``, with an empty batch callback as
the anchor, ``empty_batch_callback_step``; see `step_cost`): one model's fit
steps (the callback list's batch hooks around its train function, as
``fit`` runs them) with and without the callbacks, in blocks of warm steps,
``--step-rounds`` rounds in a random order, made anew for several instances,
with an A/A pair of plain steps as the floor (a bias there makes the verdict
"noisy"); the snapshot steps' cost is added, amortized.
``implied_fit_ratio`` divides it by plain fit's time per step (its median
epoch over the steps per epoch): computed, not measured end to end.

A callback whose work is periodic (GradientMonitor every 100 steps, with 57
steps an epoch) pays it in some epochs only: the median epoch pair shows the
typical epoch; ``total_ratio`` (summed epoch times over summed plain epoch
times) includes the periodic work.

Writes ``benchmarks/results/callback_overhead.json``. Measured, never asserted.

    python benchmarks/callback_overhead.py [--rounds 24] [--step-rounds 1500] [--repeat-data 1]
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
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The flavor is fixed when TensorFlow is imported: decide it before anything imports it.
_LEGACY = "--flavor" in sys.argv[:-1] and sys.argv[sys.argv.index("--flavor") + 1] == "tf_keras"
os.environ["TF_USE_LEGACY_KERAS"] = "1" if _LEGACY else "0"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HERE = os.path.dirname(os.path.abspath(__file__))
#: Target ratio per configuration (None: an anchor, measured only).
TARGETS: dict[str, float | None] = {
    "plain": None,
    "plain_again": None,
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
    "plain_again": "plain fit, a second model (A/A: the resolution)",
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
#: Fewest pairs whose extremes bracket the median with 90% (1 - 2/2**5 = 0.94).
MIN_PAIRS = 5
#: Fewest rounds of step blocks whose figure decides a target (see `step_cost`).
MIN_STEP_ROUNDS = 1000
#: Steps per block in `step_cost`: the first is not timed.
STEP_BLOCK = 4
#: Most instances of the fit steps in `step_cost` (one per 150 rounds).
STEP_INSTANCES = 8
#: The fit steps `step_cost` compares: configurations of `measure` and ``snapshot_step``
#: (``NaNGuard(backup_every=1)``: a snapshot step every step).
STEP_CONFIGS = (
    "plain",
    "plain_again",
    "empty_batch_callback",
    "nan_guard",
    "snapshot_step",
    "standard_set",
)
#: The fit steps whose cost `measure` reports against a target, as ``<name>_step``.
STEP_TARGETS = ("nan_guard", "standard_set")


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


def _fit_steps(
    model: Any, iterator: Any, order: Any, callbacks_for: Any, total_steps: int
) -> dict[str, Any]:
    """One instance of the fit steps of `STEP_CONFIGS` on ``model``: traced, warm.

    Each is a function that runs one step as ``fit`` runs it: the callback list's batch
    hooks around the train function (``CallbackList`` with ``History`` and no progress bar,
    as ``fit(verbose=0)`` makes it). ``on_train_begin`` runs once, as in ``fit``: what it
    installs (NaNGuard's train functions, LRScheduler's schedule) is in the traced function;
    ``on_train_end`` runs after the warm-up, so that the next configuration is traced
    without it, and the traced functions stay as they are.
    """
    import itertools

    from keras_opt.backend import keras

    names = list(STEP_CONFIGS)
    order.shuffle(names)  # made in a random order: the first made is not always the same one
    steps = {}
    for name in names:
        callback_list = keras.callbacks.CallbackList(
            callbacks_for(name),
            add_history=True,
            add_progbar=False,
            model=model,
            verbose=0,
            epochs=1,
            steps=total_steps,
        )
        before = model.train_function
        callback_list.on_train_begin()
        if model.train_function is before or model.train_function is None:
            model.make_train_function(force=True)  # a fresh trace for each configuration
        callback_list.on_epoch_begin(0)
        counter = itertools.count()

        def step(callbacks=callback_list, function=model.train_function, batch=counter):
            index = next(batch)
            callbacks.on_train_batch_begin(index)
            logs = function(iterator)
            callbacks.on_train_batch_end(index, logs)

        for _ in range(3):  # traces what it runs (the default guard: both of its functions)
            step()
        callback_list.on_train_end()
        steps[name] = step
    for step in steps.values():  # warm-up
        for _ in range(20):
            step()
    return steps


def step_cost(
    build: Any, callbacks_for: Any, x: Any, y: Any, batch_size: int, rounds: int
) -> dict[str, Any]:
    """Cost per fit step of NaNGuard, the standard set and an empty batch hook, on one model.

    One model, so that the variables (and their memory) are the same on every side;
    separate model instances differ by up to ~2% here on their own. The fit steps of
    `STEP_CONFIGS` (see `_fit_steps`): plain, plain again (A/A: the floor of this
    measurement), an empty per-batch callback (anchor), ``NaNGuard()`` (the default, a
    snapshot every 100 steps), ``NaNGuard(backup_every=1)`` (a snapshot step every step),
    and the standard set (LRScheduler + TrainingMonitor + NaNGuard, its hooks included).
    Each round runs each for one block of ``STEP_BLOCK`` steps, in a random order; the
    first step of a block (the first after another configuration's) is not timed, the
    others are, as in ``fit``, where steps follow one another. A sample is the median over
    an instance's rounds of a block's time per step minus plain's in the same round. Two
    traced functions of the same code differ here by up to ~100 us per step, the same in
    every round (the A/A comparison of one instance showed it), so the steps are made anew,
    in a random order, for each of up to ``STEP_INSTANCES`` instances (one per 150 rounds),
    and a figure is the median over instances, with a 90% order-statistics interval over
    them. The median leaves out the rare snapshot steps of the default guard: their cost,
    measured by the ``backup_every=1`` guard, is added divided by 100 to the figures of the
    configurations with a default guard (``amortized_extra_us``). Epoch ends are not in it
    (once per epoch; the epoch pairs have them). keras_opt's warnings are silenced while it
    runs (a TrainingMonitor that watches thousands of steps of one long epoch reports loss
    spikes a real epoch would not have).
    """
    import logging
    import random
    import time

    import numpy as np
    import tensorflow as tf

    from keras_opt.callbacks import NaNGuard

    model = build(1e-3)
    model.fit(x[: 2 * batch_size], y[: 2 * batch_size], batch_size=batch_size, verbose=0)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)
    iterator = iter(data.repeat())
    every = NaNGuard().backup_every
    instances = max(1, min(STEP_INSTANCES, rounds // 150))
    others = [n for n in STEP_CONFIGS if n != "plain"]
    samples: dict[str, list[float]] = {n: [] for n in others}
    times: dict[str, list[float]] = {n: [] for n in STEP_CONFIGS}
    clock, order = time.perf_counter, random.Random(0)
    total_steps = (rounds + instances) * STEP_BLOCK + 100 * instances
    quiet, level = logging.getLogger("keras_opt"), logging.getLogger("keras_opt").level
    quiet.setLevel(logging.ERROR)
    try:
        for instance in range(instances):
            steps = _fit_steps(model, iterator, order, callbacks_for, total_steps)
            names = list(steps)
            per_step: dict[str, list[float]] = {n: [] for n in names}
            for _ in range(rounds // instances + (instance < rounds % instances)):
                order.shuffle(names)
                for name in names:
                    step = steps[name]
                    step()  # the first step after another configuration's: not timed
                    start = clock()
                    for _ in range(STEP_BLOCK - 1):
                        step()
                    per_step[name].append((clock() - start) / (STEP_BLOCK - 1))
            plain = np.array(per_step["plain"])
            for name, values in samples.items():
                values.append(1e6 * float(np.median(np.array(per_step[name]) - plain)))
            for name, values in times.items():
                values.extend(per_step[name])
    finally:
        quiet.setLevel(level)

    def summary(name: str) -> tuple[float, list[float]]:
        return statistics.median(samples[name]), list(median_interval(samples[name]))

    aa_extra, aa_interval = summary("plain_again")
    snapshot_extra, _ = summary("snapshot_step")
    guard_extra, _ = summary("nan_guard")
    amortize = (snapshot_extra - guard_extra) / every
    configs = {}
    for name in ("empty_batch_callback", "nan_guard", "standard_set"):
        extra, interval = summary(name)
        add = amortize if name != "empty_batch_callback" else 0.0
        configs[name] = {
            "step_us": 1e6 * float(np.median(times[name])),
            "extra_us": extra,
            "extra_us_interval": interval,
            "extra_us_per_instance": samples[name],
            "amortized_extra_us": extra + add,
            "amortized_extra_us_interval": [v + add for v in interval],
        }
    return {
        "rounds": rounds,
        "instances": instances,
        "steps_per_block": STEP_BLOCK,
        "plain_step_us": 1e6 * float(np.median(times["plain"])),
        "plain_again_extra_us": aa_extra,
        "plain_again_extra_us_interval": aa_interval,
        "plain_again_extra_us_per_instance": samples["plain_again"],
        "snapshot_step_extra_us": snapshot_extra,
        "backup_every": every,
        "interval_coverage": INTERVAL_COVERAGE,
        "configs": configs,
    }


def step_verdict(step: dict[str, Any]) -> str:
    """ "met" / "missed" by the implied fit ratio's interval; "noisy" when it straddles the
    target, for a smoke run (fewer than `MIN_STEP_ROUNDS`), or when the A/A interval
    excludes 0 (the measurement itself is biased)."""
    low, high = step["implied_fit_ratio_interval"]
    aa_low, aa_high = step["plain_again_extra_us_interval"]
    if step["rounds"] < MIN_STEP_ROUNDS or step.get("instances", 0) < MIN_PAIRS:
        return "noisy"
    if not aa_low <= 0 <= aa_high:
        return "noisy"
    target = step["target_ratio"]
    return "met" if high <= target else "missed" if low > target else "noisy"


def measure(
    rounds: int,
    batch_size: int,
    only: list[str] | None,
    repeat_data: int = 1,
    step_rounds: int = 1500,
) -> dict:
    """Run the interleaved fits in this process's flavor; return the result dict."""
    import numpy as np
    from _machine import Window
    from _turns import Lanes
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
    names = [n for n in TARGETS if only is None or n in only or n == "plain"]
    others = [n for n in names if n != "plain"]
    # Turns per fit: one unmeasured first epoch (tracing), the measured ones, one last epoch
    # (unmeasured, so that on_train_end never overlaps another fit's epoch).
    fit_epochs = {n: 1 + rounds * (len(others) if n == "plain" else 1) + 1 for n in names}

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

    def callbacks_for(name):
        if name == "empty_batch_callback":
            return [EmptyBatchCallback()]
        if name == "tensorboard_histograms":
            return [keras.callbacks.TensorBoard(log_dir=logs, histogram_freq=1)]
        if name == "lr_scheduler":
            return [LRScheduler(OneCycle(max_lr=1e-2))]
        if name == "training_monitor":
            return [TrainingMonitor()]
        if name == "gradient_monitor":
            return [GradientMonitor(probe=probe)]
        if name == "activation_monitor":
            return [ActivationMonitor(probe=x[:256])]
        if name == "nan_guard":
            return [NaNGuard()]
        if name == "snapshot_step":  # step_cost only
            return [NaNGuard(backup_every=1)]
        if name == "standard_set":
            return [LRScheduler(OneCycle(max_lr=1e-2)), TrainingMonitor(), NaNGuard()]
        return []

    def configure(name):
        lr = 1e-3
        if name == "keras_schedule":
            lr = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=fit_epochs[name] * steps)
        return build(lr), callbacks_for(name)

    lanes = Lanes()
    for name in names:
        model, callbacks = configure(name)
        lanes.add(name, model, callbacks, x, y, batch_size=batch_size, epochs=fit_epochs[name])
    lanes.start()  # every fit is built and waits at its first epoch
    for name in names:
        lanes.turn(name)  # the first epoch: tracing, not measured
    loads = []
    pairs: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in others}
    for r in range(rounds):
        order = others[r % len(others) :] + others[: r % len(others)]
        for i, name in enumerate(order):
            # An epoch of the configuration next to an epoch of plain fit, in ABBA order from pair
            # to pair: the machine's slow phases (seconds long on a shared VM) hit both alike.
            first, second = ("plain", name) if (r + i) % 2 == 0 else (name, "plain")
            with Window() as window:
                times = {first: lanes.turn(first), second: lanes.turn(second)}
            (wall, cpu), (plain_wall, plain_cpu) = times[name], times["plain"]
            pairs[name].append((wall, cpu, plain_wall, plain_cpu))
            w = window.record
            loads.append(
                {
                    "config": name,
                    "round": r,
                    "load_1min_before": w["load_average_1min_before"],
                    "cpu_wall_ratio": w["own_cores_used"],
                    "other_processes_cores_used": w["other_processes_cores_used"],
                    "steal_cores": w["steal_cores"],
                }
            )
    lanes.finish()  # each fit's last epoch and on_train_end, one after the other
    configs = {}
    for name in others:
        ratios = [w / pw for w, _, pw, _ in pairs[name]]
        cpu_ratios = [c / pc for _, c, _, pc in pairs[name]]
        low, high = median_interval(ratios)
        target = TARGETS[name]
        ratio = statistics.median(ratios)
        verdict = None
        if target is not None and len(ratios) < MIN_PAIRS:
            verdict = "noisy"  # too few pairs for a 90% interval
        elif target is not None:
            verdict = "met" if high <= target else "missed" if low > target else "noisy"
        configs[name] = {
            "label": LABELS[name],
            "ratio": ratio,
            "total_ratio": sum(w for w, _, _, _ in pairs[name])
            / sum(pw for _, _, pw, _ in pairs[name]),
            "us_per_step": 1e6 * statistics.median((w - pw) / steps for w, _, pw, _ in pairs[name]),
            "pair_ratios": ratios,
            "interval": [low, high],
            "interval_coverage": INTERVAL_COVERAGE,
            "spread": _spread(ratios),
            "cpu_ratio": statistics.median(cpu_ratios),
            "cpu_pair_ratios": cpu_ratios,
            "median_epoch_s": statistics.median(w for w, _, _, _ in pairs[name]),
            "plain_median_epoch_s": statistics.median(pw for _, _, pw, _ in pairs[name]),
            "target_ratio": target,
            "verdict": verdict,
        }
    extra: dict[str, Any] = {}
    if step_rounds > 0 and any(n in names for n in STEP_TARGETS):
        with Window() as window:
            cost = step_cost(build, callbacks_for, x, y, batch_size, step_rounds)
        # Plain fit's time per step, from all its measured epochs.
        plain_epochs = [pw for name in others for _, _, pw, _ in pairs[name]]
        plain_fit_step_us = 1e6 * statistics.median(plain_epochs) / steps
        shared = {k: v for k, v in cost.items() if k != "configs"}
        for name, config in cost["configs"].items():
            step = {
                **shared,
                **config,
                "label": LABELS[name],
                "plain_fit_step_us": plain_fit_step_us,
                "implied_fit_ratio": 1 + config["amortized_extra_us"] / plain_fit_step_us,
                "implied_fit_ratio_interval": [
                    1 + v / plain_fit_step_us for v in config["amortized_extra_us_interval"]
                ],
                "target_ratio": TARGETS[name],
                "load": window.record,
            }
            step["verdict"] = None if step["target_ratio"] is None else step_verdict(step)
            extra[f"{name}_step"] = step
    return {
        "flavor": flavor(),
        "steps_per_epoch": steps,
        "protocol": "interleaved epochs (benchmarks/_turns.py)",
        "pairs_per_config": rounds,
        "rounds": rounds,
        "configs": configs,
        "load": loads,
        "max_load_1min": max(e["load_1min_before"] for e in loads),
        "min_cpu_wall_ratio": min(e["cpu_wall_ratio"] for e in loads),
        "max_other_processes_cores_used": max(
            (e["other_processes_cores_used"] or 0.0) for e in loads
        ),
        **extra,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=24, help="epoch pairs (with plain fit) per configuration"
    )
    parser.add_argument(
        "--repeat-data", type=int, default=1, help="copies of the digits in one epoch"
    )
    parser.add_argument(
        "--step-rounds",
        type=int,
        default=1500,
        help="rounds of fit-step blocks (0: none; see step_cost)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--flavor", choices=("both", "keras3", "tf_keras"), default="both")
    parser.add_argument("--only", default=None, help="comma-separated configurations")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "callback_overhead.json"))
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"Argument `--rounds` must be >= 1. Received: --rounds={args.rounds}")
    if args.step_rounds < 0:
        parser.error(
            f"Argument `--step-rounds` must be >= 0. Received: --step-rounds={args.step_rounds}"
        )
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
            measure(args.rounds, args.batch_size, only, args.repeat_data, args.step_rounds),
            args.out,
        )
    # Keras 3 here; tf_keras in a fresh process (the flavor is fixed at import).
    legacy_out = args.out + ".tf_keras.json"
    cmd = [sys.executable, os.path.abspath(__file__), "--flavor", "tf_keras", "--out", legacy_out]
    cmd += ["--rounds", str(args.rounds)]
    cmd += ["--repeat-data", str(args.repeat_data), "--step-rounds", str(args.step_rounds)]
    cmd += ["--batch-size", str(args.batch_size)] + (["--only", args.only] if args.only else [])
    keras3 = measure(args.rounds, args.batch_size, only, args.repeat_data, args.step_rounds)
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
