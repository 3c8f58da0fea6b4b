"""int8 vs float32 TFLite latency and size on MobileNetV2 (random weights, no download).

Exports ``keras.applications.MobileNetV2(weights=None)`` with
`keras_opt.tflite.export` as ``float32`` and full-integer ``int8`` (calibrated
on digits images upscaled to the input size, in MobileNetV2's [-1, 1] range)
and records what export measured from each file: size (raw and gzipped),
LiteRT latency (p50, mean) on the same thread count, and the int8 file's
agreement with Keras on held-out digits images. The speedup is taken from
``--repeats`` extra measurements of both files in alternation (median of the
repeats), so that a load burst on a shared machine cannot hit one variant
only. Default: 128x128x3, alpha 1.0 (the full-width network, about 2.3 M
parameters); ``--quick`` uses 96x96, alpha 0.35. Writes
``benchmarks/results/int8_vs_float32_mobilenet.json``.
Measured, never asserted.

    python benchmarks/int8_vs_float32_mobilenet.py [--size 128] [--alpha 1.0] [--runs 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import flavor, keras  # noqa: E402
from keras_opt.tflite import benchmark, export  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANT_KEYS = (
    "size_bytes",
    "gzip_bytes",
    "latency_p50_ms",
    "latency_mean_ms",
    "max_abs_diff",
    "top1_agreement",
)
SIZE_TARGET = 1 / 3  # at least 3x smaller (4x is the weights-only ideal).


def digits_images(size: int, count: int, offset: int) -> np.ndarray:
    """Digits upscaled (nearest) to ``size`` x ``size`` x 3, scaled to [-1, 1]."""
    images = load_digits().images[offset : offset + count] / 16.0  # (n, 8, 8) in [0, 1]
    factor = -(-size // 8)
    big = np.kron(images, np.ones((factor, factor)))[:, :size, :size]
    return (np.repeat(big[..., None], 3, axis=-1) * 2.0 - 1.0).astype("float32")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="input height and width")
    parser.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width multiplier")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calibration", type=int, default=100, help="calibration images")
    parser.add_argument(
        "--repeats", type=int, default=5, help="extra alternating latency measurements per file"
    )
    parser.add_argument("--quick", action="store_true", help="96x96, alpha 0.35, 30 runs")
    parser.add_argument("--export-dir", default=os.path.join(HERE, "out", "mobilenet_v2"))
    parser.add_argument(
        "--out", default=os.path.join(HERE, "results", "int8_vs_float32_mobilenet.json")
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.alpha, args.runs, args.calibration, args.repeats = 96, 0.35, 30, 32, 1

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(args.size, args.size, 3), alpha=args.alpha, weights=None, classes=10
    )
    x_cal = digits_images(args.size, args.calibration, offset=0)
    x_eval = digits_images(args.size, 64, offset=1000)
    result = export(
        model,
        args.export_dir,
        representative_data=x_cal,
        eval_data=x_eval,  # inputs only: parity with Keras, no labels (random weights)
        variants=["float32", "int8"],
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        calibration_samples=args.calibration,
        isolation="export",
    )
    rows = {r["name"]: r for r in result.table()}
    failed = {name: r["error"] for name, r in rows.items() if r["error"]}
    f32, i8 = rows["float32"], rows["int8"]
    report: dict = {
        "benchmark": "int8_vs_float32_mobilenet",
        "model": (
            f"MobileNetV2(alpha={args.alpha}, {args.size}x{args.size}x3, classes=10, "
            "random weights)"
        ),
        "params": int(model.count_params()),
        "calibration": f"{args.calibration} digits images upscaled to {args.size}x{args.size}",
        "flavor": flavor(),
        "runtime": "ai_edge_litert.interpreter",
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "variants": {name: {k: r[k] for k in VARIANT_KEYS} for name, r in rows.items()},
        "errors": failed,
    }
    if not failed:
        # export measured each file once, one after the other: on a shared machine a load
        # burst can hit one variant only. Re-measure both files in alternation with
        # keras_opt.tflite.benchmark and compare the medians of the repeats' p50 and mean.
        p50s: dict[str, list[float]] = {"float32": [], "int8": []}
        means: dict[str, list[float]] = {"float32": [], "int8": []}
        for _ in range(args.repeats):
            for name in ("float32", "int8"):
                lat = benchmark(
                    result.path(name), threads=args.threads, runs=args.runs, warmup=args.warmup
                ).latency_ms
                p50s[name].append(lat["p50"])
                means[name].append(lat["mean"])
        for name in ("float32", "int8"):
            report["variants"][name]["repeats_p50_ms"] = p50s[name]
            report["variants"][name]["median_p50_ms"] = statistics.median(p50s[name])
            report["variants"][name]["median_mean_ms"] = statistics.median(means[name])
        med = report["variants"]
        report["repeats"] = args.repeats
        report["size_ratio"] = i8["size_bytes"] / f32["size_bytes"]
        report["speedup_p50"] = med["float32"]["median_p50_ms"] / med["int8"]["median_p50_ms"]
        report["speedup_mean"] = med["float32"]["median_mean_ms"] / med["int8"]["median_mean_ms"]
        report["export_speedup_p50"] = f32["latency_p50_ms"] / i8["latency_p50_ms"]
        report["target"] = "int8 at least 3x smaller than float32 and faster (p50 speedup > 1)"
        report["meets_target"] = report["size_ratio"] <= SIZE_TARGET and report["speedup_p50"] > 1
    else:
        report["meets_target"] = False
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
