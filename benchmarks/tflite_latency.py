"""keras_opt's LiteRT latency vs the ``litert-benchmark`` tool (target: within 15%).

Exports a real architecture (MobileNetV2, alpha 0.35, 96x96, random weights: no
download) as float32 and int8, then measures each ``.tflite`` file twice on
the same thread count: with `keras_opt.tflite.benchmark` (LiteRT
``Interpreter``) and with ``litert-benchmark`` (installed by ai-edge-litert,
LiteRT ``CompiledModel``). Writes ``benchmarks/results/tflite_latency.json``.
Measured, never asserted.

    python benchmarks/tflite_latency.py [--threads 1] [--runs 100] [--repeats 3] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_opt.backend import flavor, keras  # noqa: E402
from keras_opt.tflite import benchmark, export  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def litert_benchmark(path: str, threads: int, runs: int, warmup: int) -> dict:
    """Run the ``litert-benchmark`` tool and return its JSON result."""
    tool = shutil.which("litert-benchmark") or os.path.join(
        os.path.dirname(sys.executable), "litert-benchmark"
    )
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        subprocess.run(
            [
                tool,
                f"--model={path}",
                f"--num_threads={threads}",
                f"--num_runs={runs}",
                f"--warmup_runs={warmup}",
                f"--result_json={out}",
            ],
            check=True,
            capture_output=True,
        )
        with open(out) as f:
            return json.load(f)
    finally:
        os.remove(out)


def main(
    threads: int = 1,
    runs: int = 100,
    warmup: int = 10,
    out: str | None = None,
    repeats: int = 3,
    export_dir: str | None = None,
) -> dict:
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10
    )
    x_cal = np.random.RandomState(0).rand(32, 96, 96, 3).astype("float32")
    export_dir = export_dir or os.path.join(HERE, "out", "tflite_latency")  # git-ignored
    result = export(
        model,
        export_dir,
        representative_data=x_cal,
        variants=["float32", "int8"],
        runs=runs,
        warmup=warmup,
        threads=threads,
        isolation="export",
    )
    rows = []
    for name in ("float32", "int8"):
        path = result.path(name)
        # Alternate the two tools and keep the median of each one's repeats, so that
        # load from other processes hits both alike.
        ours_p50, ours_mean, tool_p50, tool_mean = [], [], [], []
        for _ in range(repeats):
            ours = benchmark(path, threads=threads, runs=runs, warmup=warmup)
            tool = litert_benchmark(path, threads, runs, warmup)["latency"]
            ours_p50.append(ours.latency_ms["p50"])
            ours_mean.append(ours.latency_ms["mean"])
            tool_p50.append(tool["median_ms"])
            tool_mean.append(tool["avg_ms"])
        med = statistics.median
        rows.append(
            {
                "variant": name,
                "size_bytes": result[name]["size_bytes"],
                "keras_opt_mean_ms": med(ours_mean),
                "keras_opt_p50_ms": med(ours_p50),
                "litert_benchmark_mean_ms": med(tool_mean),
                "litert_benchmark_median_ms": med(tool_p50),
                "ratio_mean": med(ours_mean) / med(tool_mean),
                "ratio_p50": med(ours_p50) / med(tool_p50),
                "delegate": ours.delegate,
                "repeats": repeats,
            }
        )
    report = {
        "benchmark": "tflite_latency",
        "model": "MobileNetV2(alpha=0.35, 96x96x3, random weights)",
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "flavor": flavor(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "target": "ratio within [0.85, 1.15]",
        "results": rows,
        "within_15_percent": all(abs(r["ratio_p50"] - 1) <= 0.15 for r in rows),
    }
    out = out or os.path.join(HERE, "results", "tflite_latency.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", default=None, help="result JSON path")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--export-dir", default=None, help="folder for the .tflite files")
    args = parser.parse_args()
    rep = main(args.threads, args.runs, args.warmup, args.out, args.repeats, args.export_dir)
    for r in rep["results"]:
        print(
            f"{r['variant']:8s} keras_opt p50 {r['keras_opt_p50_ms']:.3f} ms  "
            f"litert-benchmark median {r['litert_benchmark_median_ms']:.3f} ms  "
            f"ratio {r['ratio_p50']:.3f}"
        )
    print("within 15%:", rep["within_15_percent"])
