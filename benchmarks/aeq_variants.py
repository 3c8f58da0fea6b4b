"""AI Edge Quantizer variants against the converter's: size, latency, accuracy (issue 16).

Two models:

* the digits CNN (Conv + BN + residual Add, trained on sklearn's digits): every
  variant of interest, with accuracy on held-out digits, including ``mixed``
  (int8 with the fewest layers kept in float to stay within 0.5 point of float);
* MobileNetV2 (alpha 1.0, 96x96x3, 10 classes, ``weights=None``: no download),
  calibrated on random inputs: sizes and latency only (random weights have no
  accuracy to speak of, so ``mixed`` is not run on it).

Targets: ``int4_weights`` <= 0.65x the int8 file on the digits CNN and <= 0.55x
on MobileNetV2; ``mixed`` within 0.5 point of float32 on the digits CNN.
Latency ratios are medians over ``--repeats`` alternating rounds of every file
(keras_opt's LiteRT benchmark, one thread), with the load average before and
after; they are marked ``noisy`` when the 1-minute load average exceeds 1.
Writes ``benchmarks/results/aeq_variants.json``. Measured, never asserted.

    python benchmarks/aeq_variants.py [--repeats 5] [--runs 30] [--out JSON]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from keras_opt.backend import flavor, keras  # noqa: E402
from keras_opt.tflite import benchmark, export  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import write_result  # noqa: E402

TARGETS = {"int4_vs_int8_digits": 0.65, "int4_vs_int8_mobilenet": 0.55, "mixed_points": 0.5}
DIGITS_VARIANTS = [
    "float32",
    "int8",
    "int16x8",
    "int4_weights",
    "dynamic_int4",
    "int8_int16act",
    "mixed",
]
MOBILENET_VARIANTS = ["float32", "int8", "int4_weights", "dynamic_int4"]


def digits_data():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    idx = np.random.RandomState(0).permutation(len(x))
    x, y = x[idx], d.target[idx].astype("int64")
    return x[:1400], y[:1400], x[1400:], y[1400:]


def digits_cnn():
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1), name="image")
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(32, 3, padding="same")(inputs)))
    r = layers.BatchNormalization()(layers.Conv2D(32, 3, padding="same")(h))
    h = layers.ReLU()(layers.Add()([h, r]))
    h = layers.Flatten()(layers.MaxPooling2D()(h))
    outputs = layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def load() -> float:
    return float(os.getloadavg()[0])


def alternating_latency(paths: dict[str, str], repeats: int, runs: int) -> dict:
    """p50 of every file, ``repeats`` rounds in alternation; medians and minima per variant."""
    rounds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, path in paths.items():
            rounds[name].append(benchmark(path, threads=1, runs=runs, warmup=3).latency_ms["p50"])
    return {
        name: {
            "p50_ms_rounds": vals,
            "median_p50_ms": statistics.median(vals),
            "min_p50_ms": min(vals),
        }
        for name, vals in rounds.items()
    }


def summarize(result, latency: dict, loads: tuple[float, float]) -> dict:
    rows = {}
    for v in result.variants:
        rows[v["name"]] = {
            "error": v["error"],
            "same_file_as": v["same_file_as"],
            "size_bytes": v["size_bytes"],
            "gzip_bytes": v["gzip_bytes"],
            "accuracy": (v.get("metrics") or {}).get("accuracy"),
            "top1_agreement": (v.get("parity") or {}).get("top1_agreement"),
            "kernel_types": (v.get("ops") or {}).get("kernel_types"),
            "latency": latency.get(v["name"]),
        }
        if v.get("mixed"):
            rows[v["name"]]["mixed"] = {
                k: v["mixed"][k] for k in ("summary", "kept_float", "tries", "int8_metric")
            }
    noisy = max(loads) > 1.0
    size = {n: r["size_bytes"] for n, r in rows.items() if r["size_bytes"]}
    med = {n: r["latency"]["median_p50_ms"] for n, r in rows.items() if r["latency"]}
    ratios = {}
    if "int4_weights" in size and "int8" in size:
        ratios["int4_weights_size_vs_int8"] = size["int4_weights"] / size["int8"]
    for name in ("int4_weights", "dynamic_int4", "int8_int16act", "mixed"):
        for base in ("float32", "int8"):
            if name in med and base in med:
                ratios[f"{name}_latency_vs_{base}"] = med[name] / med[base]
    return {
        "variants": rows,
        "ratios": ratios,
        "keras_accuracy": result.manifest["keras_metrics"].get("accuracy"),
        "load_before_after": list(loads),
        "timing": "noisy" if noisy else "quiet",
        "left_out": result.left_out,
    }


def run_model(name, model, variants, rep, eval_data, args, work) -> dict:
    t0 = time.perf_counter()
    result = export(
        model,
        os.path.join(work, name),
        representative_data=rep,
        eval_data=eval_data,
        variants=variants,
        runs=args.runs,
        warmup=3,
        isolation="export",
    )
    seconds = time.perf_counter() - t0
    paths = {v["name"]: result.path(v["name"]) for v in result.variants if v["file"]}
    paths = {n: p for n, p in paths.items() if not result[n]["same_file_as"]}
    before = load()
    latency = alternating_latency(paths, args.repeats, args.runs)
    out = summarize(result, latency, (before, load()))
    out["export_seconds"] = seconds
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--mobilenet-size", type=int, default=96)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "aeq_variants.json"))
    args = parser.parse_args(argv)
    x_train, y_train, x_test, y_test = digits_data()
    cnn = digits_cnn()
    cnn.fit(x_train, y_train, batch_size=32, epochs=15, verbose=0)
    side = args.mobilenet_size
    mobilenet = keras.applications.MobileNetV2(
        input_shape=(side, side, 3), alpha=1.0, weights=None, classes=10
    )
    rng = np.random.default_rng(0)
    mobile_rep = rng.uniform(-1, 1, (32, side, side, 3)).astype("float32")
    with tempfile.TemporaryDirectory(prefix="aeq_bench_") as work:
        digits = run_model(
            "digits_cnn", cnn, DIGITS_VARIANTS, x_train[:200], (x_test, y_test), args, work
        )
        mobile = run_model(
            "mobilenet_v2", mobilenet, MOBILENET_VARIANTS, mobile_rep, None, args, work
        )
    d_rows = digits["variants"]
    float_acc = d_rows["float32"]["accuracy"]
    mixed_acc = d_rows["mixed"]["accuracy"]
    checks = {
        "int4_weights_size_vs_int8_digits": {
            "value": digits["ratios"].get("int4_weights_size_vs_int8"),
            "target": f"<= {TARGETS['int4_vs_int8_digits']}",
        },
        "int4_weights_size_vs_int8_mobilenet": {
            "value": mobile["ratios"].get("int4_weights_size_vs_int8"),
            "target": f"<= {TARGETS['int4_vs_int8_mobilenet']}",
        },
        "mixed_points_below_float32_digits": {
            "value": None if mixed_acc is None else 100 * (float_acc - mixed_acc),
            "target": f"<= {TARGETS['mixed_points']}",
        },
    }
    limits = {
        "int4_weights_size_vs_int8_digits": TARGETS["int4_vs_int8_digits"],
        "int4_weights_size_vs_int8_mobilenet": TARGETS["int4_vs_int8_mobilenet"],
        "mixed_points_below_float32_digits": TARGETS["mixed_points"],
    }
    for key, check in checks.items():
        check["met"] = check["value"] is not None and check["value"] <= limits[key] + 1e-9
    result = {
        "benchmark": "aeq_variants",
        "flavor": flavor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "note": "sizes and accuracies are exact; latency ratios are medians of alternating "
        "rounds and are marked noisy when the 1-minute load average exceeded 1. MobileNetV2 "
        f"({side}x{side}, weights=None) is calibrated on random inputs: no accuracy.",
        "checks": checks,
        "digits_cnn": digits,
        "mobilenet_v2": mobile,
    }
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
