"""Run every keras_opt benchmark and write ``results.json`` and ``RESULTS.md``.

Each benchmark runs in its own subprocess, with the Keras flavor it needs
(Keras 3; the benchmarks that compare both flavors start their own tf_keras
child processes) and a timeout; one that fails or times out is recorded as such and
the others still run. Every benchmark script writes its own JSON (``--out``);
this runner collects them, adds the machine (cores, CPU model, load), the date
and the library versions, and renders a markdown table: measured value,
target, and a verdict: "met", "missed", or "noisy" when the measurement cannot
decide (see *Noise* below). Benchmarks measure; nothing here asserts.

*Noise.* The machines are shared, and a ratio measured under load can flip a
conclusion. Before a timing benchmark the runner waits (up to
``settle_s``) for the load an earlier run left in the 1-minute load average to
fade below ``max_load_per_core`` per core. Around every run it records the
load average before and after, the CPU-to-wall time ratio of the subprocess,
the cores *other* processes kept busy meanwhile (all busy CPU time in
``/proc/stat`` minus the subprocess's) and the hypervisor's steal time (see
``_machine.py``). A run is noisy when the load before it still exceeded
``max_load_per_core`` per core, when other processes used more than
``max_other_cores`` cores or steal exceeded ``max_steal_cores`` on average, or
when a row's repeats spread (max - min over median, as the script reports it)
more than ``max_spread``; a noisy run is repeated, up to ``max_attempts`` runs
in all, and the least noisy one is kept. Whatever is still noisy is marked
"noisy" instead of "met" or "missed". A script may also mark a figure noisy
itself (compression.json's verdicts, tflite_latency's ``noisy``): such a row
is "noisy" too, with "(noisy)" in its value. Sizes and accuracies are never
made noisy by load.

    python benchmarks/run_all.py                    # full run, ~30-40 min on 2 cores
    python benchmarks/run_all.py --quick            # smoke run, small settings
    python benchmarks/run_all.py --only callback_overhead,tuning_strategies

Without ``--out-dir`` a full run writes ``benchmarks/results.json``,
``benchmarks/RESULTS.md`` and ``benchmarks/results/<name>.json``; a quick run
writes them under ``benchmarks/out/quick/`` (git-ignored) so it never
overwrites the committed numbers. Subprocess logs go to ``<out-dir>/out/logs/``
(or ``<out-dir>/logs/`` for a quick run).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _machine import Window, settle  # noqa: E402

VERSIONED = (
    "keras-opt",
    "tensorflow",
    "keras",
    "tf-keras",
    "tensorflow-model-optimization",
    "ai-edge-litert",
    "keras-tuner",
    "numpy",
    "scikit-learn",
)

Row = dict[str, Any]  # {"metric", "value", "target", "met": bool | None, "spread"?, "verdict"}


def _row(
    metric: str,
    value: str,
    target: str,
    met: bool | None,
    spread: float | None = None,
    timing: bool = True,
    script_noise: str | None = None,
) -> Row:
    """One table row. ``script_noise``: why the script itself marked the figure noisy."""
    row: Row = {"metric": metric, "value": value, "target": target, "met": met}
    if not timing:
        row["timing"] = False  # a size or an accuracy: load cannot make it noisy
    if spread is not None:
        row["spread"] = spread
    if script_noise:
        row["script_noise"] = script_noise  # noisy whatever the runner measured
    return row


@dataclasses.dataclass(frozen=True)
class NoisePolicy:
    """When a timing benchmark's run counts as noisy, and how often to repeat it.

    Attributes:
        max_load_per_core: 1-minute load average per core before the run (after
            waiting up to ``settle_s`` for it to fall) above which the machine
            was busy.
        max_other_cores: Cores other processes may keep busy on average during
            the run (0.25: a quarter of one core).
        max_steal_cores: Cores the hypervisor may steal on average during the run.
        max_spread: Largest spread (max - min over median) of a row's repeats;
            None when the script reports no spread.
        max_attempts: Runs in all, the first included.
        settle_s: Seconds to wait at most for the load average to fall below
            ``max_load_per_core`` per core before each run.
    """

    max_load_per_core: float = 0.5
    max_other_cores: float = 0.25
    max_steal_cores: float = 0.1
    max_spread: float | None = None
    max_attempts: int = 3
    settle_s: float = 90.0


def noise_reasons(measured: dict[str, Any] | None, policy: NoisePolicy, cores: int) -> list[str]:
    """Why a run is noisy as a whole (load), from what `run_one` recorded around it."""
    if not measured or measured.get("load_1min_before") is None:
        return ["no load recorded"]
    reasons = []
    load = measured["load_1min_before"]
    if load > policy.max_load_per_core * cores:
        reasons.append(
            f"load average {load:.2f} before the run > {policy.max_load_per_core} x {cores} cores"
        )
    others = measured.get("other_processes_cores_used")
    if others is not None and others > policy.max_other_cores:
        reasons.append(
            f"other processes used {others:.2f} cores during the run > {policy.max_other_cores}"
        )
    steal = measured.get("steal_cores")
    if steal is not None and steal > policy.max_steal_cores:
        reasons.append(f"steal time {steal:.2f} cores during the run > {policy.max_steal_cores}")
    return reasons


def judge(rows: list[Row], reasons: list[str], policy: NoisePolicy | None) -> list[Row]:
    """Give every row a verdict: "met", "missed", "noisy" or "-" (no target).

    A row the script itself marked noisy (``script_noise``) is "noisy" whatever
    the load around the run was.
    """
    for row in rows:
        timing = row.get("timing", True)
        row_reasons = list(reasons) if policy is not None and timing else []
        spread = row.get("spread")
        limit = policy.max_spread if policy is not None else None
        if limit is not None and spread is not None and spread > limit:
            row_reasons.append(f"repeats spread {spread:.1%} > {limit:.0%}")
        if row.get("script_noise"):
            row_reasons.append(f"script: {row['script_noise']}")
        if row["met"] is None and not row.get("script_noise"):
            row["verdict"] = "-"
        elif row_reasons:
            row["verdict"] = "noisy"
            row["noise"] = "; ".join(row_reasons)
        else:
            row["verdict"] = "met" if row["met"] else "missed"
            row.pop("noise", None)
    return rows


def _noise_key(entry: dict[str, Any]) -> tuple[int, bool]:
    return noisy_count(entry["rows"]), bool(entry.get("noise"))


def noisy_count(rows: list[Row]) -> int:
    """Rows still marked noisy."""
    return sum(row.get("verdict") == "noisy" for row in rows)


# ----- per-benchmark summaries: the JSON a script wrote -> table rows ---------------------------
def _callback_overhead(r: dict) -> list[Row]:
    rows = []
    for flavor, part in r["flavors"].items():
        for name, c in part["configs"].items():
            if name == "plain":
                continue
            target = c["target_ratio"]
            rounds = ", ".join(f"{x:.3f}" for x in c.get("round_ratios", []))
            if "pair_ratios" not in c:  # a result of the round-based protocol before pairs
                rows.append(
                    _row(
                        f"{c['label']} vs plain fit ({flavor})",
                        f"{c['ratio']:.3f} (round ratios {rounds})",
                        "none (anchor)" if target is None else f"<= {target}",
                        c["meets_target"],
                        c.get("spread"),
                    )
                )
                continue
            low, high = c["interval"]
            interval = f"{c['interval_coverage']:.0%} interval {low:.3f}-{high:.3f}"
            noise = None
            if c.get("verdict") == "noisy":
                noise = f"its {interval} straddles {target}"
            rows.append(
                _row(
                    f"{c['label']} vs plain fit ({flavor})",
                    f"{c['ratio']:.3f} ({interval}, {len(c['pair_ratios'])} "
                    f"{'epoch pairs' if 'us_per_step' in c else 'pairs'}; epoch "
                    f"{c['median_epoch_s']:.3f} s vs {c['plain_median_epoch_s']:.3f} s"
                    + (f", {c['us_per_step']:+.0f} us per step" if "us_per_step" in c else "")
                    + f"; CPU time {c['cpu_ratio']:.3f})"
                    + (" (noisy)" if noise else ""),
                    "none (anchor)" if target is None else f"<= {target}",
                    None if target is None else c["verdict"] == "met",
                    script_noise=noise,
                )
            )
        for name in ("empty_batch_callback", "nan_guard", "standard_set"):
            step = part.get(f"{name}_step")
            if step:
                rows.append(_step_row(flavor, step))
    return rows


def _step_row(flavor: str, step: dict) -> Row:
    """A configuration's cost per fit step (one model's fit steps in turn) as a fit ratio."""
    low, high = step["implied_fit_ratio_interval"]
    extra_low, extra_high = step["amortized_extra_us_interval"]
    aa_low, aa_high = step["plain_again_extra_us_interval"]
    target = step["target_ratio"]
    noise = None
    if step["verdict"] == "noisy":
        noise = f"its interval {low:.3f}-{high:.3f} straddles {target}"
        if not aa_low <= 0 <= aa_high:
            noise = f"the A/A interval {aa_low:+.0f} to {aa_high:+.0f} us excludes 0"
    amortized = ", snapshot steps amortized" if target is not None else ""
    return _row(
        f"{step['label']} per fit step, as a fit ratio ({flavor})",
        f"{step['implied_fit_ratio']:.3f} ({step['interval_coverage']:.0%} interval "
        f"{low:.3f}-{high:.3f}; {step['amortized_extra_us']:+.0f} us per step "
        f"({extra_low:+.0f} to {extra_high:+.0f}{amortized}) over "
        f"{step['rounds']} rounds of step blocks, {step.get('instances', 1)} instances; "
        f"A/A {aa_low:+.0f} to {aa_high:+.0f} us; "
        f"plain step {step['plain_step_us']:.0f} us in blocks, "
        f"{step['plain_fit_step_us']:.0f} us in fit)" + (" (noisy)" if noise else ""),
        "none (anchor)" if target is None else f"<= {target}",
        None if target is None else step["verdict"] == "met",
        script_noise=noise,
    )


LATENCY_PARITY = 0.05  # issue 15: keras_opt's p50 within 5% of litert-benchmark's


def _tflite_latency(r: dict) -> list[Row]:
    noise = (r.get("note") or "marked noisy by the script") if r.get("noisy") else None
    return [
        _row(
            f"LiteRT p50 latency, keras_opt / litert-benchmark ({v['variant']}, {r['model']})",
            f"{v['ratio_p50']:.3f} ({v['keras_opt_p50_ms']:.3f} ms vs "
            f"{v['litert_benchmark_median_ms']:.3f} ms"
            + (f"; ratio of minima {v['ratio_min_p50']:.3f}" if "ratio_min_p50" in v else "")
            + (f", {v['repeats']} repeats" if "repeats" in v else "")
            + ")"
            + (" (noisy)" if noise else ""),
            f"{1 - LATENCY_PARITY:.2f} - {1 + LATENCY_PARITY:.2f}",
            abs(v["ratio_p50"] - 1) <= LATENCY_PARITY,
            script_noise=noise,
        )
        for v in r["results"]
    ]


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _points(v: float) -> str:
    return f"{v:+.2f} points"


def _mobile_latency(c: dict) -> str:
    return (
        f"int8 {c['int8_p50_ms']:.4f} ms vs float32 {c['float32_p50_ms']:.4f} ms p50 "
        f"(int8/float32 {c['int8_over_float32']:.3f}; load {c['load_average_1min']})"
    )


# name in compression.json's "comparison" -> (metric, value from the entry, timing row)
_COMPRESSION_ROWS: dict[str, tuple[str, Callable[[dict], str], bool]] = {
    "prune_80_accuracy": (
        "80% pruning + int8: accuracy, native vs TFMOT",
        lambda c: (
            f"{_pct(c['native'])} vs {_pct(c['tfmot'])} ({_points(c['native_minus_tfmot_points'])})"
        ),
        False,
    ),
    "prune_80_gzipped_size": (
        "80% pruning + int8: gzipped size, native / TFMOT",
        lambda c: f"{c['native_over_tfmot']:.3f}x ({c['native_bytes']} vs {c['tfmot_bytes']} B)",
        False,
    ),
    "cluster_16_accuracy": (
        "16 clusters + int8: accuracy, native vs TFMOT",
        lambda c: (
            f"{_pct(c['native'])} vs {_pct(c['tfmot'])} ({_points(c['native_minus_tfmot_points'])})"
        ),
        False,
    ),
    "prune_step_time_native_vs_tfmot": (
        "80% pruned fit step time, native / TFMOT (across processes)",
        lambda c: (
            f"{c['ratio']:.3f} ({c['native_ms']:.2f} vs {c['tfmot_ms']:.2f} ms; CPU "
            f"{c['cpu_ratio']:.3f})"
        ),
        True,
    ),
    "prune_step_time_native_vs_unpruned": (
        "80% pruned fit step time, native / unpruned (keras3, alternating)",
        lambda c: f"{c['ratio']:.3f} (CPU {c['cpu_ratio']:.3f}, spread {c['spread']:.1%})",
        True,
    ),
    "prune_step_time_tfmot_vs_unpruned": (
        "80% pruned fit step time, TFMOT / unpruned (tf_keras, alternating)",
        lambda c: f"{c['ratio']:.3f} (CPU {c['cpu_ratio']:.3f}, spread {c['spread']:.1%})",
        True,
    ),
    "qat_accuracy_vs_tfmot": (
        "QAT int8 .tflite: accuracy, native vs TFMOT",
        lambda c: (
            f"{_pct(c['native'])} vs {_pct(c['tfmot'])} ({_points(c['native_minus_tfmot_points'])})"
        ),
        False,
    ),
    "qat_accuracy_vs_float": (
        "QAT int8 .tflite: accuracy drop vs float32",
        lambda c: (
            f"native {_points(c['native_drop_points'])}, TFMOT "
            f"{_points(c['tfmot_drop_points'])} (float32 {_pct(c['float32'])})"
        ),
        False,
    ),
    "pcqat_accuracy_vs_float": (
        "PCQAT int8 .tflite (50%, 8 clusters): accuracy drop vs float32",
        lambda c: (
            f"native {_points(c['native_drop_points'])}, TFMOT "
            f"{_points(c['tfmot_drop_points'])} (float32 {_pct(c['float32'])})"
        ),
        False,
    ),
    "pcqat_gzipped_size_vs_float": (
        "PCQAT int8 .tflite: gzipped size / float32 gzipped",
        lambda c: (
            f"native {c['native_ratio']:.3f}x ({c['native_bytes']} B), TFMOT "
            f"{c['tfmot_ratio']:.3f}x ({c['tfmot_bytes']} B)"
        ),
        False,
    ),
    "mobilenet_agreement": (
        "MobileNet-style int8 .tflite: top-1 agreement with its Keras QAT model",
        lambda c: f"native {_pct(c['native'])}, TFMOT {_pct(c['tfmot'])} ({c['samples']} images)",
        False,
    ),
    "mobilenet_latency_native": (
        "MobileNet-style LiteRT p50, int8 vs float32 (native QAT, 1 thread)",
        _mobile_latency,
        True,
    ),
    "mobilenet_latency_tfmot": (
        "MobileNet-style LiteRT p50, int8 vs float32 (TFMOT QAT, 1 thread)",
        _mobile_latency,
        True,
    ),
}


def _script_verdict(entry: dict) -> tuple[bool | None, str | None]:
    """A compression.json verdict as (met, script noise): "noisy" is not a failure."""
    verdict = entry["verdict"]
    if verdict == "noisy":
        return None, "; ".join(entry.get("noise") or []) or "marked noisy by the script"
    if verdict not in ("met", "missed", "reference"):
        raise ValueError(f"unknown verdict {verdict!r}")
    return {"met": True, "missed": False, "reference": None}[verdict], None


def _pcqat_in_file(flavor: str, engine: str, q: dict) -> Row:
    return _row(
        f"PCQAT int8 .tflite kernels ({engine}, {flavor}): zeros, int8 values per channel",
        f"sparsity {q['min_sparsity']:.3f}-{q['max_sparsity']:.3f}, at most "
        f"{q['max_unique_per_channel']} values/channel, {len(q['kernels_in_tflite'])} kernels",
        q["target"],
        bool(q["met"]),
        timing=False,
    )


def _compression(r: dict) -> list[Row]:
    """Rows from ``comparison`` (each with its verdict) and PCQAT read back per flavor."""
    rows = []
    for name, c in r["comparison"].items():
        if name == "pcqat_kernels_in_file":  # one row per flavor below
            continue
        met, noise = _script_verdict(c)
        metric, value, timing = _COMPRESSION_ROWS.get(
            name, (name.replace("_", " "), lambda c: str(c.get("ratio", "see JSON")), True)
        )
        rows.append(
            _row(
                metric,
                value(c) + (" (noisy)" if noise else ""),
                c["target"],
                met,
                timing=timing,
                script_noise=noise,
            )
        )
    engines = {"keras3": "native", "tf_keras": "TFMOT"}
    for flavor, engine in engines.items():
        if "pcqat_int8" in r.get(flavor, {}):
            rows.append(_pcqat_in_file(flavor, engine, r[flavor]["pcqat_int8"]))
    return rows


def _aeq_variants(r: dict) -> list[Row]:
    """AI Edge Quantizer variants: the script's checks, then latency per model (reference)."""
    labels = {
        "int4_weights_size_vs_int8_digits": "AEQ int4 weight-only file / converter int8 (digits)",
        "int4_weights_size_vs_int8_mobilenet": (
            "AEQ int4 weight-only file / converter int8 (MobileNetV2)"
        ),
        "mixed_points_below_float32_digits": "mixed int8/float accuracy below float32 (digits)",
    }
    rows = []
    for name, check in r["checks"].items():
        value = check["value"]
        unit = " points" if name.startswith("mixed") else "x"
        rows.append(
            _row(
                labels.get(name, name.replace("_", " ")),
                "not measured" if value is None else f"{value:.3f}{unit}",
                check["target"],
                bool(check["met"]),
                timing=False,
            )
        )
    for model in ("digits_cnn", "mobilenet_v2"):
        part = r.get(model)
        if not part:
            continue
        ratios = {
            k.removesuffix("_latency_vs_float32"): v
            for k, v in part["ratios"].items()
            if k.endswith("_latency_vs_float32")
        }
        loads = part.get("load_before_after") or []
        noise = None
        if part.get("timing") == "noisy":
            noise = f"load average {max(loads):.2f} > 1.0" if loads else "marked noisy"
        rows.append(
            _row(
                f"AEQ variants LiteRT p50 / float32 ({model}, 1 thread)",
                ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
                + (f" (load {', '.join(f'{x:.2f}' for x in loads)})" if loads else "")
                + (" (noisy)" if noise else ""),
                "none (reference)",
                None,
                script_noise=noise,
            )
        )
    return rows


def _mobilenet(r: dict) -> list[Row]:
    if r.get("errors"):
        return [_row(f"int8 vs float32 ({r['model']})", f"failed: {r['errors']}", "", False)]
    f32, i8 = r["variants"]["float32"], r["variants"]["int8"]
    return [
        _row(
            f"int8 vs float32 p50 latency speedup ({r['model']}, {r['threads']} thread)",
            f"{r['speedup_p50']:.2f}x ({f32['median_p50_ms']:.2f} ms -> "
            f"{i8['median_p50_ms']:.2f} ms, median of {r['repeats']} alternating repeats; "
            f"mean {r['speedup_mean']:.2f}x)",
            "> 1",
            r["speedup_p50"] > 1,
        ),
        _row(
            "int8 vs float32 file size (same model)",
            f"{r['size_ratio']:.3f}x ({f32['size_bytes'] / 1e6:.2f} MB -> "
            f"{i8['size_bytes'] / 1e6:.2f} MB)",
            "<= 0.333 (3x smaller)",
            r["size_ratio"] <= 1 / 3,
            timing=False,
        ),
    ]


def _tuning(r: dict) -> list[Row]:
    rows = sorted(r["results"], key=lambda x: -x["test_accuracy_mean"])
    ranking = ", ".join(
        f"{x['strategy']} {100 * x['test_accuracy_mean']:.1f}+-{100 * x['test_accuracy_std']:.1f}"
        for x in rows
    )
    return [
        _row(
            f"Tuning strategy -> digits test accuracy % ({r['seeds']} seeds, {r['epochs']} epochs)",
            ranking,
            "none (measured)",
            None,
        )
    ]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One benchmark script: how to run it and how to read its JSON."""

    name: str
    script: str
    legacy_keras: bool
    full_args: tuple[str, ...]
    quick_args: tuple[str, ...]
    timeout_s: int
    summarize: Callable[[dict], list[Row]]
    export_dir: bool = False  # the script takes --export-dir for its .tflite files
    flavor: str | None = None  # shown instead of the one legacy_keras implies (both flavors)
    noise: NoisePolicy | None = None  # timing benchmarks: repeat and mark noisy runs
    quick_timeout_s: int = 300  # timeout of a --quick run


BENCHMARKS = (
    Benchmark(
        "callback_overhead",
        "callback_overhead.py",
        False,
        (),
        (
            "--rounds",
            "1",
            "--batch-size",
            "128",
            "--repeat-data",
            "1",
            "--only",
            "nan_guard",
            "--step-rounds",
            "100",
        ),
        1500,
        _callback_overhead,
        flavor="keras3 + tf_keras",
        # Rows judge themselves on two estimators (see callback_overhead.py); the runner repeats
        # a run that other processes disturbed.
        noise=NoisePolicy(max_load_per_core=0.5, max_attempts=2),
    ),
    Benchmark(
        "tflite_latency",
        "tflite_latency.py",
        False,
        (),
        ("--runs", "20", "--warmup", "3", "--repeats", "1"),
        900,
        _tflite_latency,
        export_dir=True,
        noise=NoisePolicy(max_load_per_core=0.5),
    ),
    Benchmark(
        "compression",
        "compression.py",
        False,  # the script runs its own Keras 3 and tf_keras children
        (),
        (
            "--epochs",
            "3",
            "--finetune",
            "2",
            "--rounds",
            "2",
            "--timing-epochs",
            "2",
            "--qat-epochs",
            "1",
            "--pcqat-epochs",
            "1",
            "--mobile-epochs",
            "2",
            "--latency-rounds",
            "2",
            "--latency-runs",
            "30",
        ),
        1800,
        _compression,
        flavor="keras3 + tf_keras",
        # The script marks its own timing rows noisy (load > 1.0, spread > 10%); one run only:
        # a full run takes minutes, and its accuracy and size rows do not depend on load.
        noise=NoisePolicy(max_load_per_core=0.5, max_attempts=1),
        quick_timeout_s=600,
    ),
    Benchmark(
        "int8_vs_float32_mobilenet",
        "int8_vs_float32_mobilenet.py",
        False,
        (),
        ("--quick",),
        900,
        _mobilenet,
        export_dir=True,
        noise=NoisePolicy(max_load_per_core=0.5),
    ),
    Benchmark(
        "aeq_variants",
        "aeq_variants.py",
        False,
        (),
        ("--repeats", "1", "--runs", "10", "--mobilenet-size", "64"),
        1800,
        _aeq_variants,
        # Sizes and accuracies do not depend on load and the latency rows are references the
        # script marks noisy itself: one run only.
        noise=NoisePolicy(max_load_per_core=0.5, max_attempts=1),
        quick_timeout_s=600,
    ),
    Benchmark(
        "tuning_strategies",
        "tuning_strategies.py",
        False,
        (),
        ("--epochs", "3", "--seeds", "1"),
        900,
        _tuning,
    ),
)
NAMES = tuple(b.name for b in BENCHMARKS)


# ----- machine, versions --------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Cores, CPU model, OS and load of this machine."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None,)
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1min_at_start": None if load[0] is None else round(load[0], 2),
    }


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries the benchmarks use."""
    out: dict[str, str | None] = {}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# ----- running ------------------------------------------------------------------------------------
def run_once(bench: Benchmark, out_dir: str, log_dir: str, quick: bool) -> dict[str, Any]:
    """Run one benchmark script once in a subprocess; return its entry for ``results.json``."""
    json_path = os.path.join(out_dir, "results", f"{bench.name}.json")
    log_path = os.path.join(log_dir, f"{bench.name}.log")
    if os.path.exists(json_path):
        os.remove(json_path)  # never report a stale result as this run's
    cmd = [sys.executable, os.path.join(HERE, bench.script), "--out", json_path]
    args = list(bench.quick_args if quick else bench.full_args)
    cmd += args
    if bench.export_dir:
        cmd += ["--export-dir", os.path.normpath(os.path.join(log_dir, "..", "tflite", bench.name))]
    env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1" if bench.legacy_keras else "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
    }
    timeout = bench.quick_timeout_s if quick else bench.timeout_s
    entry: dict[str, Any] = {
        "script": f"benchmarks/{bench.script}",
        "flavor": bench.flavor or ("tf_keras" if bench.legacy_keras else "keras3"),
        "args": args,
        "timeout_s": timeout,
        "log": os.path.relpath(log_path, out_dir),
    }
    settled = None
    if bench.noise is not None and not quick:  # a quick run is a smoke test: no waiting
        cores = os.cpu_count() or 1
        settled = settle(bench.noise.max_load_per_core * cores, timeout_s=bench.noise.settle_s)
    with Window(children=True) as window, open(log_path, "w") as log:
        try:
            proc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
            )
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            status = f"timeout ({timeout} s)"
    w = window.record
    entry["seconds"] = round(w["wall_s"], 1)
    entry["measured"] = {
        "load_1min_before": w["load_average_1min_before"],
        "load_1min_after": w["load_average_1min_after"],
        "cpu_wall_ratio": w["own_cores_used"],
        "other_processes_cores_used": w["other_processes_cores_used"],
        "steal_cores": w["steal_cores"],
        "settle_waited_s": None if settled is None else settled["waited_s"],
    }
    entry["status"] = status
    entry["result"] = None
    entry["rows"] = []
    if status == "ok" and os.path.exists(json_path):
        with open(json_path) as f:
            entry["result"] = json.load(f)
        try:
            entry["rows"] = bench.summarize(entry["result"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
            entry["status"] = f"unreadable result ({type(err).__name__}: {err})"
    elif status == "ok":
        entry["status"] = "failed (no result JSON)"
    if entry["status"] != "ok":
        with open(log_path) as f:
            entry["log_tail"] = f.read()[-2000:]
    return entry


def run_one(
    bench: Benchmark,
    out_dir: str,
    log_dir: str,
    quick: bool,
    run: Callable[..., dict[str, Any]] = run_once,
    max_attempts: int | None = None,
    cores: int | None = None,
) -> dict[str, Any]:
    """Run a benchmark, repeating it while it is noisy (see the module docstring).

    ``run`` does one run (tests pass a fake); ``max_attempts`` overrides the policy's.
    """
    cores = cores or os.cpu_count() or 1
    attempts: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    limit = bench.noise.max_attempts if bench.noise is not None else 1
    if max_attempts is not None and bench.noise is not None:
        limit = max_attempts
    for _ in range(limit):
        entry = run(bench, out_dir, log_dir, quick)
        reasons = noise_reasons(entry.get("measured"), bench.noise, cores) if bench.noise else []
        judge(entry["rows"], reasons, bench.noise)
        entry["noise"] = reasons
        attempts.append(
            {
                **(entry.get("measured") or {}),
                "status": entry["status"],
                "noisy_rows": noisy_count(entry["rows"]),
                "reasons": reasons,
            }
        )
        if best is None or (
            entry["status"] == "ok"
            and (best["status"] != "ok" or _noise_key(entry) <= _noise_key(best))
        ):
            best = entry
        if entry["status"] != "ok" or (not reasons and not noisy_count(entry["rows"])):
            break
    assert best is not None
    best["attempts"] = attempts
    return best


# ----- markdown -----------------------------------------------------------------------------------
def _met(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "**no**")


def _verdict(row: Row) -> str:
    verdict = row.get("verdict")
    if verdict is None:
        return _met(row["met"])
    return {"met": "met", "missed": "**missed**", "noisy": "noisy", "-": "-"}[verdict]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _compression_tables(r: dict[str, Any]) -> list[str]:
    """Per-engine accuracy and gzipped size of every compressed digits model (from the files)."""
    if "keras3" not in r or "tf_keras" not in r:
        return []
    settings = r.get("settings", {})
    lines = [
        "",
        "## Compression: native engine (Keras 3) vs TFMOT (tf_keras), digits CNN",
        "",
        f"Same starting weights and fine-tuning settings in both engines ({r.get('data', '')}). "
        f"QAT: {settings.get('qat_finetune', '?')}; PCQAT: {settings.get('pcqat_finetune', '?')}."
        " Accuracy of each int8 `.tflite` file on the held-out digits (LiteRT); gzipped size "
        "over the float32 `.tflite` gzipped.",
        "",
        "| model | native accuracy % | TFMOT accuracy % | native gzip ratio | TFMOT gzip ratio |",
        "|---|---|---|---|---|",
    ]
    n, t = r["keras3"], r["tf_keras"]
    f_n = n.get("baseline_float32", {}).get("gzipped_bytes")
    f_t = t.get("baseline_float32", {}).get("gzipped_bytes")
    names = {
        "baseline_float32": "float32",
        "baseline_int8": "int8 (post-training)",
        "prune_80_int8": "80% pruned + int8 (post-training)",
        "cluster_16_int8": "16 clusters + int8 (post-training)",
        "qat_int8": "QAT int8",
        "pcqat_int8": "PCQAT int8 (50%, 8 clusters)",
    }
    for key, label in names.items():
        if key not in n or key not in t:
            continue

        def ratio(entry: dict, base: int | None) -> str:
            size = entry.get("gzipped_bytes")
            return f"{size / base:.3f}" if size and base else "-"

        lines.append(
            f"| {label} | {100 * n[key]['accuracy']:.2f} | {100 * t[key]['accuracy']:.2f} "
            f"| {ratio(n[key], f_n)} | {ratio(t[key], f_t)} |"
        )
    m_n, m_t = n.get("mobilenet_style"), t.get("mobilenet_style")
    if m_n and m_t:
        lines += [
            "",
            f"MobileNet-style model: {m_n['model']} ({m_n['parameters']} parameters). Keras "
            f"float accuracy {100 * m_n['keras_float_accuracy']:.2f}%; int8 file accuracy "
            f"native {100 * m_n['int8_tflite_accuracy']:.2f}%, TFMOT "
            f"{100 * m_t['int8_tflite_accuracy']:.2f}%. Latency: {m_n['latency']['protocol']}.",
        ]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The ``RESULTS.md`` text of a ``results.json`` report."""
    m = report["machine"]
    lines = [
        "# keras_opt benchmark results",
        "",
        f"Generated by `python benchmarks/run_all.py{' --quick' if report['quick'] else ''}` "
        f"on {report['date']}.",
        "",
        f"**Machine:** {m['cores']} cores, {m['cpu_model']}, {m['platform']}, Python "
        f"{m['python']} (1-min load average at start: {m['load_average_1min_at_start']}).",
        "",
    ]
    if report.get("note"):
        lines += [f"> {report['note']}", ""]
    if report["quick"]:
        lines += ["> Quick smoke run (small settings): these numbers are not representative.", ""]
    lines += [
        "**Versions:** "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v is not None),
        "",
        "| benchmark | flavor | metric | measured | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in report["benchmarks"].items():
        if entry["status"] != "ok":
            lines.append(
                f"| {name} | {entry['flavor']} | - | {_cell(entry['status'])} | - | **no** |"
            )
            continue
        for row in entry["rows"]:
            lines.append(
                f"| {name} | {entry['flavor']} | {_cell(row['metric'])} | {_cell(row['value'])} "
                f"| {_cell(row['target'])} | {_verdict(row)} |"
            )
    tuning = report["benchmarks"].get("tuning_strategies", {}).get("result")
    if tuning:
        lines += [
            "",
            "## Tuning strategy -> test accuracy (digits)",
            "",
            f"{tuning['model']}; {tuning['optimizer']}; {tuning['epochs']} epochs for every "
            f"strategy; mean +- std over {tuning['seeds']} seed(s); the test split is used once, "
            "after the last epoch. Measured, never asserted.",
            "",
            "| strategy | batch | test accuracy % | test loss | fit s |",
            "|---|---|---|---|---|",
        ]
        for r in tuning["results"]:
            lines.append(
                f"| {r['strategy']} | {r['batch_size']} | {100 * r['test_accuracy_mean']:.2f} "
                f"+- {100 * r['test_accuracy_std']:.2f} | {r['test_loss_mean']:.3f} "
                f"| {r['fit_seconds_mean']:.1f} |"
            )
    compression = report["benchmarks"].get("compression", {}).get("result")
    if compression and report["benchmarks"]["compression"].get("status") == "ok":
        lines += _compression_tables(compression)
    mobilenet = report["benchmarks"].get("int8_vs_float32_mobilenet", {}).get("result")
    if mobilenet and not mobilenet.get("errors"):
        lines += [
            "",
            f"## int8 vs float32: {mobilenet['model']}",
            "",
            f"Measured by `keras_opt.tflite.export` ({mobilenet['runtime']}, "
            f"{mobilenet['threads']} thread, {mobilenet['runs']} runs after "
            f"{mobilenet['warmup']} warmup); calibration: {mobilenet['calibration']}."
            " Top-1 agreement with Keras is on 64 held-out digits images (random weights: it"
            " checks the quantization, not accuracy).",
            "",
            "| variant | size MB | gzip MB | export p50 ms | export mean ms "
            "| p50 ms, median of repeats | top-1 agreement with Keras |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in mobilenet["variants"].items():
            lines.append(
                f"| {name} | {v['size_bytes'] / 1e6:.2f} | {v['gzip_bytes'] / 1e6:.2f} "
                f"| {v['latency_p50_ms']:.2f} | {v['latency_mean_ms']:.2f} "
                f"| {v['median_p50_ms']:.2f} | {v['top1_agreement']} |"
            )
    lines += [
        "",
        "## Runs",
        "",
        "| benchmark | script | status | seconds | load before / after, CPU/wall | noise |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in report["benchmarks"].items():
        measured = entry.get("measured") or {}
        if measured:
            load = (
                f"{measured.get('load_1min_before')} / {measured.get('load_1min_after')}, "
                f"{measured.get('cpu_wall_ratio')}"
            )
        else:
            load = "not recorded"
        attempts = len(entry.get("attempts", [])) or 1
        noise = "; ".join(entry.get("noise") or []) or "-"
        if attempts > 1:
            noise += f" ({attempts} runs)"
        lines.append(
            f"| {name} | `{entry['script']} {' '.join(entry['args'])}` | "
            f"{_cell(entry['status'])}{'; ' + entry['rerun'] if entry.get('rerun') else ''} "
            f"| {'-' if entry.get('seconds') is None else entry['seconds']} | {load} "
            f"| {_cell(noise)} |"
        )
    lines += ["", "Per-benchmark details: `results.json` (the full JSON of every script).", ""]
    return "\n".join(lines)


def rerender(out_dir: str) -> dict[str, Any]:
    """Rebuild ``results.json`` rows and ``RESULTS.md`` from ``results/<name>.json`` (no run).

    Lets one benchmark be re-run on its own (``python benchmarks/<name>.py``) and
    folded into the report; a benchmark the report does not have yet is added.
    """
    json_path = os.path.join(out_dir, "results.json")
    with open(json_path) as f:
        report = json.load(f)
    by_name = {b.name: b for b in BENCHMARKS}
    for bench in BENCHMARKS:  # a benchmark added since the full run, run on its own
        fresh = os.path.join(out_dir, "results", f"{bench.name}.json")
        if bench.name not in report["benchmarks"] and os.path.exists(fresh):
            report["benchmarks"][bench.name] = {
                "script": f"benchmarks/{bench.script}",
                "flavor": bench.flavor or ("tf_keras" if bench.legacy_keras else "keras3"),
                "args": [],
                "seconds": None,
                "measured": None,
                "status": "ok",
                "result": None,  # read below
                "rows": [],
                "rerun": "result from a run of the script on its own, not by run_all",
            }
    for name, entry in report["benchmarks"].items():
        fresh = os.path.join(out_dir, "results", f"{name}.json")
        if entry["status"] == "ok" and os.path.exists(fresh):
            with open(fresh) as f:
                result = json.load(f)
            if result != entry["result"]:  # re-run on its own since the full run
                if entry["result"] is not None:
                    entry["rerun"] = "result from a later run of the script on its own"
                entry["result"] = result
                entry["status"] = "ok"
                entry["measured"] = None  # what run_all measured was another run
                entry["seconds"] = result.get("seconds") if isinstance(result, dict) else None
        if entry["status"] == "ok" and name in by_name:
            bench = by_name[name]
            entry["flavor"] = bench.flavor or ("tf_keras" if bench.legacy_keras else "keras3")
            entry["rows"] = bench.summarize(entry["result"])
            if bench.noise is not None and entry.get("rerun"):
                # run_all did not watch that run: its timing rows cannot be judged quiet.
                entry["noise"] = ["run on its own: no load recorded by run_all"]
            elif bench.noise is not None:
                # Runs from before loads were recorded: judge by the load at the report's start.
                measured = entry.get("measured") or {
                    "load_1min_before": report["machine"].get("load_average_1min_at_start")
                }
                entry["noise"] = noise_reasons(measured, bench.noise, report["machine"]["cores"])
            judge(entry["rows"], entry.get("noise") or [], bench.noise)
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out_dir, "RESULTS.md"), "w") as f:
        f.write(render_markdown(report))
    print(f"re-rendered {json_path} and RESULTS.md", flush=True)
    return report


def parse_only(text: str | None) -> list[str]:
    """Validate ``--only``: a comma-separated list of benchmark names."""
    if not text:
        return list(NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        raise SystemExit(
            f"Argument `--only` must name benchmarks among {', '.join(NAMES)}. "
            f"Received: --only={text!r}"
        )
    return names


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings: a smoke run")
    parser.add_argument(
        "--only", default=None, help=f"comma-separated subset of: {', '.join(NAMES)}"
    )
    parser.add_argument(
        "--out-dir",
        default=None,
        help="where results.json, RESULTS.md and results/ go "
        "(default: benchmarks/, or benchmarks/out/quick with --quick)",
    )
    parser.add_argument("--note", default=None, help="a line added to RESULTS.md")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=None,
        help="runs of a noisy timing benchmark in all (default: each benchmark's policy)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: fold <out-dir>/results/<name>.json into results.json and RESULTS.md",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        return rerender(os.path.abspath(args.out_dir or HERE))
    names = parse_only(args.only)
    out_dir = os.path.abspath(
        args.out_dir or (os.path.join(HERE, "out", "quick") if args.quick else HERE)
    )
    log_dir = os.path.join(out_dir, "logs" if args.out_dir or args.quick else "out/logs")
    os.makedirs(os.path.join(out_dir, "results"), exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)

    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "note": args.note,
        "machine": machine(),
        "versions": versions(),
        "benchmarks": {},
    }
    chosen = [b for b in BENCHMARKS if b.name in names]
    total = time.perf_counter()
    for i, bench in enumerate(chosen, 1):
        flavor = bench.flavor or ("tf_keras" if bench.legacy_keras else "keras3")
        print(f"[{i}/{len(chosen)}] {bench.name} ({flavor}) ...", flush=True)
        entry = run_one(bench, out_dir, log_dir, args.quick, max_attempts=args.max_attempts)
        report["benchmarks"][bench.name] = entry
        print(f"      {entry['status']} in {entry['seconds']:.1f} s", flush=True)
        for row in entry["rows"]:
            print(
                f"      {row['metric']}: {row['value']}  [target {row['target']}: "
                f"{_verdict(row).strip('*')}]",
                flush=True,
            )
        if entry["status"] != "ok":
            print(f"      see {os.path.join(out_dir, entry['log'])}", flush=True)
    report["seconds"] = round(time.perf_counter() - total, 1)

    json_path = os.path.join(out_dir, "results.json")
    md_path = os.path.join(out_dir, "RESULTS.md")
    if args.only and os.path.exists(json_path):
        # A subset run updates its entries and keeps the other benchmarks' results.
        with open(json_path) as f:
            previous = json.load(f)
        if previous.get("quick") == args.quick:
            previous["benchmarks"].update(report["benchmarks"])
            report["benchmarks"] = previous["benchmarks"]
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2)
    with open(md_path, "w") as f:
        f.write(render_markdown(report))
    print(f"wrote {json_path} and {md_path} ({report['seconds']:.0f} s)", flush=True)
    return report


if __name__ == "__main__":
    result = main()
    sys.exit(0 if all(e["status"] == "ok" for e in result["benchmarks"].values()) else 1)
