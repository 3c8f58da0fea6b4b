"""Native engine (Keras 3) against TFMOT (tf_keras) on a digits CNN, side by side.

One run measures both compression engines of ``keras_opt.optimization`` on the
same CNN (Conv+BatchNorm, residual add, Dense) and the same sklearn digits
split. The Keras flavor is fixed per process, so the parent runs each half in
a child process, one after the other (never concurrently), with
``TF_USE_LEGACY_KERAS`` set for it, and merges their JSON:

* ``--flavor keras3``: native engine (`prune`, `cluster`, `quantize`,
  `collaborative`; no callbacks).
* ``--flavor tf_keras``: TFMOT (``callbacks=kopt.callbacks(model)``).

The base models (the digits CNN and a MobileNet-style model) are trained once,
in the Keras 3 child, and their weights are loaded by layer name into the
tf_keras copies, so both engines start from the same weights; fine-tuning
settings (optimizer, learning rate, epochs) and seeds are the same in both.

Targets, issue 12 ("Quality and speed"), native against TFMOT:

* 80% pruning: TFLite int8 accuracy within 0.5 points, gzipped int8 size
  within 5% (one-sided: native no worse than TFMOT by more than that);
* 16 clusters: TFLite int8 accuracy within 0.5 points (one-sided);
* fit step time of the pruned model <= 1.10x the TFMOT-pruned model (a ratio
  across the two child processes) and <= 1.15x the unpruned model (same
  flavor, measured in alternation inside the child).

Targets, issue 13 ("Quality"), from the int8 ``.tflite`` files (QAT models
converted directly with ``Optimize.DEFAULT``, no calibration set):

* QAT int8: accuracy within 0.5 points of TFMOT's (one-sided) and within 1.0
  point of the float model (its float32 ``.tflite``);
* PCQAT int8 (50% sparsity, 8 clusters, the configuration of TFMOT's
  collaborative-optimization guide): accuracy within 1.0 point of the float
  model, gzipped size <= 0.12x the float32 ``.tflite`` gzipped, and every
  kernel read back from the file keeps 50% +- 2% zeros and <= 8 int8 values
  per output channel. (With 16 clusters the same run measured 0.132x native
  and 0.135x TFMOT: a 16-value kernel costs ~1 bit more per nonzero weight
  in gzip than an 8-value one, and the Dense kernels are 86% of the weights.);
* MobileNet-style model (Conv+BN+ReLU6 stem, inverted-residual blocks of
  1x1 Conv+BN+ReLU6, DepthwiseConv+BN+ReLU6, 1x1 Conv+BN and a residual Add,
  then pooling and Dense; digits upsampled to 32x32): top-1 agreement of the
  int8 file with its Keras QAT model >= 99%, and its LiteRT p50 latency next to
  float32's (a reference, no target: both files in alternation, 1 thread).

Step times are medians over alternating rounds (pruned, unpruned, unpruned,
pruned...); latencies likewise (float32, int8, int8, float32...). Each timing
records the 1-min load average, the process CPU and wall time and the CPU used
by other processes; a figure is "noisy" instead of met/missed when the load
average exceeds 1.0 or the repeats spread by more than 10%. Every accuracy and
size comes from a ``.tflite`` file run with the LiteRT interpreter. Writes
``benchmarks/results/compression.json``. Measured, never asserted.

    python benchmarks/compression.py [--epochs 20] [--finetune 8] [--rounds 9] [--out JSON]
    python benchmarks/compression.py --rounds 2 --timing-epochs 2 ...  # quicker
    python benchmarks/compression.py --flavor keras3 --out half.json   # one half only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _machine import Window, load_1min  # noqa: E402

FLAVORS = ("keras3", "tf_keras")
ENGINES = {"keras3": "native", "tf_keras": "tfmot"}
LOSS = "sparse_categorical_crossentropy"
BATCH = 32
SEED = 0
NOISY_LOAD = 1.0  # 1-min load average above which a timing is "noisy"
NOISY_SPREAD = 0.10  # (max - min) / median of the repeats above which it is "noisy"
ACCURACY_POINTS = 0.5
SIZE_RATIO = 1.05
STEP_VS_TFMOT = 1.10
STEP_VS_UNPRUNED = 1.15
QAT_POINTS_VS_TFMOT = 0.5
QAT_POINTS_VS_FLOAT = 1.0
PCQAT_POINTS_VS_FLOAT = 1.0
PCQAT_SIZE_VS_FLOAT = 0.12  # gzipped int8 .tflite over gzipped float32 .tflite
PCQAT_SPARSITY = 0.5
PCQAT_CLUSTERS = 8
SPARSITY_TOLERANCE = 0.02
AGREEMENT = 0.99
MOBILE_SIZE = 32  # digits upsampled (nearest) to 32x32
BN_MOMENTUM = 0.9  # MobileNet-style model
# Fine-tuning and timing settings shared by both children (one dict, one set of CLI flags).
DEFAULTS = {
    "epochs": 20,
    "finetune": 8,
    "rounds": 9,
    "timing_epochs": 3,
    "qat_epochs": 3,
    "qat_lr": 1e-4,
    "pcqat_epochs": 4,
    "pcqat_lr": 1e-4,
    "mobile_epochs": 8,
    "latency_rounds": 7,
    "latency_runs": 200,
}
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


# ----- machine load: benchmarks/_machine.py (stdlib only; used by parent and children) ----------
_load = load_1min


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def alternate_latency(benchmark: Any, paths: dict[str, str], rounds: int, runs: int) -> dict:
    """LiteRT p50 of two ``.tflite`` files measured in alternation (ABBA...), 1 thread.

    ``benchmark`` is `keras_opt.tflite.benchmark` (litert-benchmark's protocol:
    random inputs, XNNPACK, warm-up runs first). Each round measures both files;
    the figures are medians over rounds, with the load and the spreads recorded.
    """
    names = list(paths)
    p50: dict[str, list[float]] = {name: [] for name in names}
    delegates: dict[str, str] = {}
    with Window() as window:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                measured = benchmark(paths[name], threads=1, runs=runs, warmup=max(5, runs // 10))
                p50[name].append(measured.latency_ms["p50"])
                delegates[name] = measured.delegate
    a, b = names
    ratios = [y / x for x, y in zip(p50[a], p50[b], strict=True)]
    spreads = {f"{name}_p50_spread": _spread(p50[name]) for name in names}
    spreads[f"{b}_over_{a}_spread"] = _spread(ratios)
    loads = [window.record["load_average_1min_before"], window.record["load_average_1min_after"]]
    load = max((v for v in loads if v is not None), default=0.0)
    noise = [f"load average {load} > {NOISY_LOAD}"] if load > NOISY_LOAD else []
    noise += [
        f"{key.removesuffix('_spread')} repeats spread {v:.1%} > {NOISY_SPREAD:.0%}"
        for key, v in spreads.items()
        if v > NOISY_SPREAD
    ]
    return {
        "protocol": (
            f"{rounds} rounds alternating {a} and {b} ({a} first in even rounds); each "
            f"measurement: keras_opt.tflite.benchmark, 1 thread, {runs} runs after "
            f"{max(5, runs // 10)} warm-up runs, random inputs; median of the rounds' p50"
        ),
        "delegates": delegates,
        **{f"{name}_p50_ms_per_round": [round(v, 5) for v in p50[name]] for name in names},
        **{f"{name}_p50_ms": statistics.median(p50[name]) for name in names},
        f"{b}_over_{a}_per_round": [round(v, 4) for v in ratios],
        f"{b}_over_{a}": statistics.median(ratios),
        f"{a}_over_{b}_speedup": statistics.median([1 / v for v in ratios]),
        **spreads,
        "window": window.record,
        "noise": noise,
    }


# ----- one flavor (child process) -----------------------------------------------------------------
def run_flavor(
    flavor: str,
    settings: dict,
    save_base: str | None = None,
    load_base: str | None = None,
) -> dict:
    """Measure one engine in this process; TensorFlow is imported here, after the flavor is set."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1" if flavor == "tf_keras" else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import gzip
    import warnings

    import numpy as np
    import tensorflow as tf
    from _common import EpochTimer
    from ai_edge_litert.interpreter import Interpreter
    from sklearn.datasets import load_digits

    import keras_opt.optimization as kopt
    from keras_opt import backend
    from keras_opt.backend import keras
    from keras_opt.tflite import benchmark as litert_latency

    epochs, finetune = settings["epochs"], settings["finetune"]
    rounds, timing_epochs = settings["rounds"], settings["timing_epochs"]

    if backend.flavor() != flavor:
        raise RuntimeError(
            f"Argument `--flavor` must match the Keras flavor of this process. Received: "
            f"--flavor={flavor!r}, but keras_opt resolved {backend.flavor()!r} (TensorFlow "
            "was imported before the flavor was set)."
        )

    def digits():
        d = load_digits()
        x = (d.images / 16.0).astype("float32")[..., None]
        idx = np.random.RandomState(SEED).permutation(len(x))
        x, y = x[idx], d.target[idx]
        return x[:1400], y[:1400], x[1400:], y[1400:]

    def build():
        keras.utils.set_random_seed(SEED)
        inputs = keras.Input((8, 8, 1), name="image")
        x = keras.layers.Conv2D(32, 3, padding="same", name="stem")(inputs)
        x = keras.layers.ReLU(name="stem_relu")(keras.layers.BatchNormalization(name="stem_bn")(x))
        r = keras.layers.Conv2D(32, 3, padding="same", name="res_conv")(x)
        r = keras.layers.BatchNormalization(name="res_bn")(r)
        x = keras.layers.ReLU(name="res_relu")(keras.layers.Add(name="res_add")([x, r]))
        x = keras.layers.Flatten(name="flatten")(keras.layers.MaxPooling2D(name="pool")(x))
        x = keras.layers.Dense(128, activation="relu", name="hidden")(x)
        outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
        return keras.Model(inputs, outputs, name="digits_cnn")

    def build_mobile():
        """MobileNetV2-style: Conv+BN+ReLU6 stem, inverted-residual blocks, pooling, Dense."""
        keras.utils.set_random_seed(SEED)
        layers = keras.layers
        # BN momentum 0.9, not Keras' 0.99: with a few hundred training steps, 0.99 leaves the
        # moving statistics near their initial values (held-out accuracy ~20% against ~97%
        # with batch statistics).
        inputs = keras.Input((MOBILE_SIZE, MOBILE_SIZE, 1), name="image")
        h = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
        h = layers.ReLU(6.0, name="stem_relu6")(
            layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(h)
        )
        for i in (1, 2):
            if i == 2:
                h = layers.MaxPooling2D(name="pool")(h)
            r = layers.Conv2D(48, 1, use_bias=False, name=f"b{i}_expand")(h)
            r = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{i}_expand_bn")(r)
            r = layers.ReLU(6.0, name=f"b{i}_expand_relu6")(r)
            r = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"b{i}_dw")(r)
            r = layers.ReLU(6.0, name=f"b{i}_dw_relu6")(
                layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{i}_dw_bn")(r)
            )
            r = layers.Conv2D(16, 1, use_bias=False, name=f"b{i}_project")(r)
            r = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{i}_project_bn")(r)
            h = layers.Add(name=f"b{i}_add")([h, r])
        h = layers.Flatten(name="flatten")(layers.AveragePooling2D(2, name="avg_pool")(h))
        outputs = layers.Dense(10, activation="softmax", name="head")(h)
        return keras.Model(inputs, outputs, name="mobilenet_style")

    def compile_(model, lr=1e-3):
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=LOSS, metrics=["accuracy"])
        return model

    def to_int8(model, x_cal=None) -> bytes:
        """Optimize.DEFAULT; with ``x_cal`` full-integer post-training quantization."""
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if x_cal is not None:
            converter.representative_dataset = lambda: ([s[None]] for s in x_cal)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()

    def to_float32(model) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()

    def tflite_predictions(content: bytes, x) -> np.ndarray:
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        scale, zero = inp["quantization"]
        found = []
        for image in x:
            data = image[None]
            if inp["dtype"] != np.float32:
                data = np.round(data / scale + zero).astype(inp["dtype"])
            interpreter.set_tensor(inp["index"], data)
            interpreter.invoke()
            found.append(int(np.argmax(interpreter.get_tensor(out["index"]))))
        return np.asarray(found)

    def tflite_accuracy(content: bytes, x, y) -> float:
        return float(np.mean(tflite_predictions(content, x) == y))

    def gzipped(content: bytes) -> int:
        return len(gzip.compress(content, compresslevel=9))

    def kernels_in_file(content: bytes) -> dict[str, dict]:
        """Sparsity and max distinct values per output channel of each op kernel.

        Kernels are the weight inputs (input 1) of the conv and fully-connected ops,
        so activations of the same shape and dtype are never counted; a kernel that
        is not int8 is listed with its dtype only.
        """
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        details = {d["index"]: d for d in interpreter.get_tensor_details()}
        found = {}
        for op in interpreter._get_ops_details():
            if op["op_name"] not in WEIGHT_OPS or len(op["inputs"]) < 2:
                continue
            detail = details[int(op["inputs"][1])]
            if detail["dtype"] != np.int8:
                found[detail["name"]] = {"op": op["op_name"], "dtype": str(detail["dtype"])}
                continue
            values = interpreter.get_tensor(detail["index"])
            if op["op_name"] == "DEPTHWISE_CONV_2D":  # (1, h, w, channels): channels last
                per_channel = np.moveaxis(values, -1, 0).reshape(values.shape[-1], -1)
            else:  # (out, ...) for CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV
                per_channel = values.reshape(values.shape[0], -1)
            found[detail["name"]] = {
                "op": op["op_name"],
                "dtype": "int8",
                "shape": [int(d) for d in values.shape],
                "sparsity": float(np.mean(values == 0)),
                "max_unique_per_channel": int(max(np.unique(row).size for row in per_channel)),
                "unique_in_tensor": int(np.unique(values).size),
            }
        return found

    def int8_entry(model, base_acc, base_gz) -> dict:
        content = to_int8(model, x_cal)
        acc = tflite_accuracy(content, x_test, y_test)
        return {
            "accuracy": acc,
            "accuracy_drop_points": 100 * (base_acc - acc),
            "bytes": len(content),
            "gzipped_bytes": gzipped(content),
            "gzipped_ratio_vs_baseline": gzipped(content) / base_gz,
            "kernels_in_tflite": kernels_in_file(content),
        }

    def fit_timed(model, epochs_):
        timer = EpochTimer()
        model.fit(
            x,
            y,
            epochs=epochs_,
            batch_size=BATCH,
            verbose=0,
            callbacks=[*kopt.callbacks(model), timer],
        )
        return timer

    x, y, x_test, y_test = digits()
    sections: dict[str, float] = {}
    last = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        sections[name] = round(now - last[0], 1)
        last[0] = now

    x_cal = x[:200]
    steps_per_epoch = -(-len(x) // BATCH)
    started = time.perf_counter()
    result: dict = {
        "flavor": flavor,
        "engine": ENGINES[flavor],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "steps_per_epoch": steps_per_epoch,
    }

    # Base models: trained here, or loaded (by layer name) from the other flavor's files.
    def trained(model, name: str, x_fit, y_fit, epochs_: int, lr: float = 1e-3) -> str:
        compile_(model, lr)
        if load_base:
            path = os.path.join(load_base, f"{name}.npz")
            saved = np.load(path)
            for layer in model.layers:
                n = sum(1 for key in saved.files if key.startswith(f"{layer.name}/"))
                if n:
                    layer.set_weights([saved[f"{layer.name}/{i}"] for i in range(n)])
            how = f"weights loaded from {name}.npz (trained in the other child)"
        else:
            model.fit(x_fit, y_fit, epochs=epochs_, batch_size=BATCH, verbose=0)
            how = f"trained here, {epochs_} epochs, Adam({lr:g})"
        if save_base:
            np.savez(
                os.path.join(save_base, f"{name}.npz"),
                **{
                    f"{layer.name}/{i}": w
                    for layer in model.layers
                    for i, w in enumerate(layer.get_weights())
                },
            )
        return how

    base = build()
    result["base_model"] = trained(base, "digits_cnn", x, y, epochs)
    result["baseline_keras_accuracy"] = float(base.evaluate(x_test, y_test, verbose=0)[1])
    base_int8 = to_int8(base, x_cal)
    base_acc = tflite_accuracy(base_int8, x_test, y_test)
    base_gz = gzipped(base_int8)
    result["baseline_int8"] = {
        "accuracy": base_acc,
        "bytes": len(base_int8),
        "gzipped_bytes": base_gz,
    }
    base_f32 = to_float32(base)
    float_acc = tflite_accuracy(base_f32, x_test, y_test)
    float_gz = gzipped(base_f32)
    result["baseline_float32"] = {
        "accuracy": float_acc,
        "bytes": len(base_f32),
        "gzipped_bytes": float_gz,
    }

    lap("base")
    # 80% pruning (default schedule fitted to the fine-tuning fit) + int8.
    keras.utils.set_random_seed(SEED)
    pruned = compile_(kopt.prune(base, target_sparsity=0.8), lr=5e-4)
    timer = fit_timed(pruned, finetune)
    stripped = kopt.strip(pruned)
    result["prune_80_int8"] = {
        **int8_entry(stripped, base_acc, base_gz),
        "kernel_sparsity": kopt.compression_summary(stripped).sparsity,
        "finetune_epochs": finetune,
        "finetune_epoch_s": [round(t, 4) for t in timer.times],
        "finetune_epoch_cpu_s": [round(t, 4) for t in timer.cpu_times],
    }

    lap("prune_80")
    # 16 clusters + int8.
    keras.utils.set_random_seed(SEED)
    clustered = compile_(kopt.cluster(base, 16), lr=1e-4)
    clustered.fit(x, y, epochs=max(1, finetune // 2), batch_size=BATCH, verbose=0)
    stripped = kopt.strip(clustered)
    result["cluster_16_int8"] = {
        **int8_entry(stripped, base_acc, base_gz),
        "max_unique_per_kernel": max(
            row.unique_values for row in kopt.compression_summary(stripped).layers
        ),
        "finetune_epochs": max(1, finetune // 2),
    }

    lap("cluster_16")
    # Step time: a pruned model (80%, masks recomputed at the fine-tuning ramp's cadence) and
    # the unpruned model, same optimizer, fit in alternation; median epoch / steps per fit.
    total = finetune * steps_per_epoch
    frequency = max(1, max(1, int(0.7 * (total - 1))) // 10)
    keras.utils.set_random_seed(SEED)
    models = {
        "pruned": compile_(
            kopt.prune(base, target_sparsity=0.8, schedule="constant", frequency=frequency),
            lr=5e-4,
        ),
        "unpruned": compile_(keras.models.clone_model(base), lr=5e-4),
    }
    models["unpruned"].set_weights(base.get_weights())
    for model in models.values():
        fit_timed(model, 1)  # trace outside the timing
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    fastest: dict[str, float] = {name: float("inf") for name in models}
    with Window() as window:
        for r in range(rounds):
            order = ("pruned", "unpruned") if r % 2 == 0 else ("unpruned", "pruned")
            for name in order:
                timer = fit_timed(models[name], timing_epochs)
                wall[name].append(statistics.median(timer.times) / steps_per_epoch)
                cpu[name].append(statistics.median(timer.cpu_times) / steps_per_epoch)
                fastest[name] = min(fastest[name], min(timer.times) / steps_per_epoch)
    ratios = [p / u for p, u in zip(wall["pruned"], wall["unpruned"], strict=True)]
    cpu_ratios = [p / u for p, u in zip(cpu["pruned"], cpu["unpruned"], strict=True)]
    result["step_time"] = {
        "definition": (
            f"{rounds} alternating rounds (pruned first in even rounds); each round fits each "
            f"model {timing_epochs} epochs and takes the median epoch / {steps_per_epoch} steps. "
            f"Pruned model: 80%, constant schedule, masks recomputed every {frequency} steps "
            "(the fine-tuning ramp's cadence), its engine's callbacks in every fit. Unpruned: "
            "a clone of the base model. Both Adam(5e-4), batch 32, after a 1-epoch warm-up fit."
        ),
        "mask_update_frequency_steps": frequency,
        "pruned_step_ms": [round(1e3 * t, 4) for t in wall["pruned"]],
        "unpruned_step_ms": [round(1e3 * t, 4) for t in wall["unpruned"]],
        "pruned_step_cpu_ms": [round(1e3 * t, 4) for t in cpu["pruned"]],
        "unpruned_step_cpu_ms": [round(1e3 * t, 4) for t in cpu["unpruned"]],
        "median_pruned_step_ms": 1e3 * statistics.median(wall["pruned"]),
        "median_unpruned_step_ms": 1e3 * statistics.median(wall["unpruned"]),
        "median_pruned_step_cpu_ms": 1e3 * statistics.median(cpu["pruned"]),
        "median_unpruned_step_cpu_ms": 1e3 * statistics.median(cpu["unpruned"]),
        "fastest_pruned_step_ms": 1e3 * fastest["pruned"],
        "fastest_unpruned_step_ms": 1e3 * fastest["unpruned"],
        "pruned_vs_unpruned_fastest": fastest["pruned"] / fastest["unpruned"],
        "pruned_vs_unpruned_ratios": [round(v, 4) for v in ratios],
        "pruned_vs_unpruned": statistics.median(ratios),
        "pruned_vs_unpruned_spread": _spread(ratios),
        "pruned_vs_unpruned_cpu_ratios": [round(v, 4) for v in cpu_ratios],
        "pruned_vs_unpruned_cpu": statistics.median(cpu_ratios),
        "pruned_vs_unpruned_cpu_spread": _spread(cpu_ratios),
        "pruned_step_spread": _spread(wall["pruned"]),
        "pruned_step_cpu_spread": _spread(cpu["pruned"]),
        "window": window.record,
    }

    lap("step_time")
    # QAT int8: quantize the base model, fine-tune, convert the QAT model directly.
    keras.utils.set_random_seed(SEED)
    qat = compile_(kopt.quantize(base), lr=settings["qat_lr"])
    qat.fit(x, y, epochs=settings["qat_epochs"], batch_size=BATCH, verbose=0)
    content = to_int8(qat)
    acc = tflite_accuracy(content, x_test, y_test)
    kernels = kernels_in_file(content)
    result["qat_int8"] = {
        "accuracy": acc,
        "keras_qat_accuracy": float(qat.evaluate(x_test, y_test, verbose=0)[1]),
        "float32_accuracy": float_acc,
        "drop_vs_float32_points": 100 * (float_acc - acc),
        "bytes": len(content),
        "gzipped_bytes": gzipped(content),
        "gzipped_ratio_vs_float32": gzipped(content) / float_gz,
        "all_kernels_int8": bool(kernels) and all(k["dtype"] == "int8" for k in kernels.values()),
        "kernels_in_tflite": kernels,
        "finetune": f"{settings['qat_epochs']} epochs, Adam({settings['qat_lr']:g}), batch {BATCH}",
    }

    lap("qat")
    # PCQAT int8: prune 50% -> cluster 8 (sparsity kept) -> QAT (both kept), then convert.
    keras.utils.set_random_seed(SEED)
    pcqat = kopt.collaborative(
        base,
        x,
        y,
        recipe="pcqat",
        target_sparsity=PCQAT_SPARSITY,
        number_of_clusters=PCQAT_CLUSTERS,
        epochs=settings["pcqat_epochs"],
        batch_size=BATCH,
        optimizer=keras.optimizers.Adam(settings["pcqat_lr"]),
        metrics=["accuracy"],
    )
    content = to_int8(pcqat)
    kernels = kernels_in_file(content)
    acc = tflite_accuracy(content, x_test, y_test)
    int8_kernels = [k for k in kernels.values() if k["dtype"] == "int8"]
    result["pcqat_int8"] = {
        "accuracy": acc,
        "float32_accuracy": float_acc,
        "drop_vs_float32_points": 100 * (float_acc - acc),
        "accuracy_drop_points": 100 * (base_acc - acc),  # vs the PTQ int8 baseline
        "bytes": len(content),
        "gzipped_bytes": gzipped(content),
        "gzipped_ratio_vs_float32": gzipped(content) / float_gz,
        "gzipped_ratio_vs_baseline": gzipped(content) / base_gz,
        "kernels_in_tflite": kernels,
        "min_sparsity": min((k["sparsity"] for k in int8_kernels), default=0.0),
        "max_sparsity": max((k["sparsity"] for k in int8_kernels), default=0.0),
        "max_unique_per_channel": max(
            (k["max_unique_per_channel"] for k in int8_kernels), default=0
        ),
        "target": (
            f"every kernel int8, {PCQAT_SPARSITY:.0%} +- {SPARSITY_TOLERANCE:.0%} zeros and "
            f"<= {PCQAT_CLUSTERS} int8 values per output channel"
        ),
        "met": bool(
            kernels
            and len(int8_kernels) == len(kernels)
            and all(
                abs(k["sparsity"] - PCQAT_SPARSITY) <= SPARSITY_TOLERANCE
                and k["max_unique_per_channel"] <= PCQAT_CLUSTERS
                for k in int8_kernels
            )
        ),
        "finetune": (
            f"{settings['pcqat_epochs']} epochs per stage (prune, cluster, QAT), "
            f"Adam({settings['pcqat_lr']:g}) fresh per stage, batch {BATCH}"
        ),
    }

    lap("pcqat")

    # MobileNet-style model on digits upsampled to 32x32: QAT, agreement, latency.
    def up(images):
        f = MOBILE_SIZE // 8
        return np.repeat(np.repeat(images, f, axis=1), f, axis=2)

    x32, x32_test = up(x), up(x_test)
    mobile = build_mobile()
    how = trained(mobile, "mobilenet_style", x32, y, settings["mobile_epochs"])
    mobile_f32 = to_float32(mobile)
    keras.utils.set_random_seed(SEED)
    mobile_qat = compile_(kopt.quantize(mobile), lr=settings["qat_lr"])
    mobile_qat.fit(x32, y, epochs=settings["qat_epochs"], batch_size=BATCH, verbose=0)
    mobile_int8 = to_int8(mobile_qat)
    file_top1 = tflite_predictions(mobile_int8, x32_test)
    keras_top1 = np.argmax(mobile_qat.predict(x32_test, verbose=0), axis=-1)
    kernels = kernels_in_file(mobile_int8)
    with tempfile.TemporaryDirectory(prefix="kopt_mobile_") as tmp:
        paths = {"float32": os.path.join(tmp, "float32.tflite")}
        paths["int8"] = os.path.join(tmp, "int8.tflite")
        for name, data in (("float32", mobile_f32), ("int8", mobile_int8)):
            with open(paths[name], "wb") as f:
                f.write(data)
        latency = alternate_latency(
            litert_latency, paths, settings["latency_rounds"], settings["latency_runs"]
        )
    result["mobilenet_style"] = {
        "model": (
            f"{mobile.name}: {MOBILE_SIZE}x{MOBILE_SIZE}x1 digits (nearest upsampling); "
            "stem Conv 3x3/2 (16)+BN+ReLU6; 2 inverted-residual blocks (1x1 Conv(48)+BN+ReLU6, "
            "DepthwiseConv 3x3+BN+ReLU6, 1x1 Conv(16)+BN, Add) at 16x16 and, after a MaxPool, "
            "8x8; AveragePooling 2x2, Flatten, Dense(10); BatchNormalization momentum "
            f"{BN_MOMENTUM}"
        ),
        "parameters": int(mobile.count_params()),
        "base_model": how,
        "keras_float_accuracy": float(mobile.evaluate(x32_test, y_test, verbose=0)[1]),
        "float32_tflite_accuracy": tflite_accuracy(mobile_f32, x32_test, y_test),
        "keras_qat_accuracy": float(np.mean(keras_top1 == y_test)),
        "int8_tflite_accuracy": float(np.mean(file_top1 == y_test)),
        "top1_agreement_int8_vs_keras_qat": float(np.mean(file_top1 == keras_top1)),
        "agreement_samples": len(y_test),
        "float32_bytes": len(mobile_f32),
        "int8_bytes": len(mobile_int8),
        "all_kernels_int8": bool(kernels) and all(k["dtype"] == "int8" for k in kernels.values()),
        "int8_kernel_ops": sorted(k["op"] for k in kernels.values()),
        "finetune": f"{settings['qat_epochs']} epochs, Adam({settings['qat_lr']:g}), batch {BATCH}",
        "latency": latency,
    }
    lap("mobilenet_style")
    result["section_seconds"] = sections
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# ----- both flavors (parent process) --------------------------------------------------------------
def _timing_noise(*steps: dict, spreads: list[float]) -> list[str]:
    reasons = []
    for s in steps:
        w = s["window"]
        loads = [w["load_average_1min_before"], w["load_average_1min_after"]]
        load = max((v for v in loads if v is not None), default=0.0)
        if load > NOISY_LOAD:
            reasons.append(f"load average {load} > {NOISY_LOAD}")
    reasons += [f"repeats spread {v:.1%} > {NOISY_SPREAD:.0%}" for v in spreads if v > NOISY_SPREAD]
    return reasons


def _verdict(met: bool, noise: list[str] | None = None) -> str:
    return "noisy" if noise else ("met" if met else "missed")


def compare(native: dict, tfmot: dict) -> dict:
    """The issue-12 targets, native (Keras 3) against TFMOT (tf_keras)."""
    p_n, p_t = native["prune_80_int8"], tfmot["prune_80_int8"]
    c_n, c_t = native["cluster_16_int8"], tfmot["cluster_16_int8"]
    s_n, s_t = native["step_time"], tfmot["step_time"]
    prune_acc = 100 * (p_n["accuracy"] - p_t["accuracy"])
    size = p_n["gzipped_bytes"] / p_t["gzipped_bytes"]
    cluster_acc = 100 * (c_n["accuracy"] - c_t["accuracy"])
    across = s_n["median_pruned_step_ms"] / s_t["median_pruned_step_ms"]
    across_noise = _timing_noise(
        s_n, s_t, spreads=[s_n["pruned_step_spread"], s_t["pruned_step_spread"]]
    )
    within_noise = _timing_noise(s_n, spreads=[s_n["pruned_vs_unpruned_spread"]])
    tfmot_noise = _timing_noise(s_t, spreads=[s_t["pruned_vs_unpruned_spread"]])
    return {
        "prune_80_accuracy": {
            "native": p_n["accuracy"],
            "tfmot": p_t["accuracy"],
            "native_minus_tfmot_points": prune_acc,
            "native_drop_points": p_n["accuracy_drop_points"],
            "tfmot_drop_points": p_t["accuracy_drop_points"],
            "target": f"native >= TFMOT - {ACCURACY_POINTS} points (TFLite int8 accuracy)",
            "verdict": _verdict(prune_acc >= -ACCURACY_POINTS),
        },
        "prune_80_gzipped_size": {
            "native_bytes": p_n["gzipped_bytes"],
            "tfmot_bytes": p_t["gzipped_bytes"],
            "native_over_tfmot": size,
            "target": f"native <= {SIZE_RATIO}x TFMOT (gzipped int8 .tflite)",
            "verdict": _verdict(size <= SIZE_RATIO),
        },
        "cluster_16_accuracy": {
            "native": c_n["accuracy"],
            "tfmot": c_t["accuracy"],
            "native_minus_tfmot_points": cluster_acc,
            "native_drop_points": c_n["accuracy_drop_points"],
            "tfmot_drop_points": c_t["accuracy_drop_points"],
            "target": f"native >= TFMOT - {ACCURACY_POINTS} points (TFLite int8 accuracy)",
            "verdict": _verdict(cluster_acc >= -ACCURACY_POINTS),
        },
        "prune_step_time_native_vs_tfmot": {
            "native_ms": s_n["median_pruned_step_ms"],
            "tfmot_ms": s_t["median_pruned_step_ms"],
            "ratio": across,
            "cpu_ratio": s_n["median_pruned_step_cpu_ms"] / s_t["median_pruned_step_cpu_ms"],
            "cpu_spreads": [s_n["pruned_step_cpu_spread"], s_t["pruned_step_cpu_spread"]],
            "ratio_of_fastest_epochs": (
                s_n["fastest_pruned_step_ms"] / s_t["fastest_pruned_step_ms"]
            ),
            "unpruned_keras3_vs_tf_keras": (
                s_n["median_unpruned_step_ms"] / s_t["median_unpruned_step_ms"]
            ),
            "unpruned_keras3_vs_tf_keras_cpu": (
                s_n["median_unpruned_step_cpu_ms"] / s_t["median_unpruned_step_cpu_ms"]
            ),
            "across_processes": True,
            "note": (
                "Ratio of medians measured in two child processes run one after the other "
                "(never concurrently), not in alternation: load drift between them is not "
                "cancelled out. It also includes the fit-loop cost of Keras 3 against tf_keras "
                "(see unpruned_keras3_vs_tf_keras: the same unpruned model in both flavors)."
            ),
            "target": f"<= {STEP_VS_TFMOT}",
            "noise": across_noise,
            "verdict": _verdict(across <= STEP_VS_TFMOT, across_noise),
        },
        "prune_step_time_native_vs_unpruned": {
            "ratio": s_n["pruned_vs_unpruned"],
            "cpu_ratio": s_n["pruned_vs_unpruned_cpu"],
            "spread": s_n["pruned_vs_unpruned_spread"],
            "cpu_spread": s_n["pruned_vs_unpruned_cpu_spread"],
            "ratio_of_fastest_epochs": s_n["pruned_vs_unpruned_fastest"],
            "across_processes": False,
            "target": f"<= {STEP_VS_UNPRUNED} (Keras 3, alternating in one process)",
            "noise": within_noise,
            "verdict": _verdict(s_n["pruned_vs_unpruned"] <= STEP_VS_UNPRUNED, within_noise),
        },
        "prune_step_time_tfmot_vs_unpruned": {
            "ratio": s_t["pruned_vs_unpruned"],
            "cpu_ratio": s_t["pruned_vs_unpruned_cpu"],
            "spread": s_t["pruned_vs_unpruned_spread"],
            "cpu_spread": s_t["pruned_vs_unpruned_cpu_spread"],
            "ratio_of_fastest_epochs": s_t["pruned_vs_unpruned_fastest"],
            "across_processes": False,
            "target": "none (reference: TFMOT's own overhead, tf_keras, alternating)",
            "noise": tfmot_noise,
            "verdict": "noisy" if tfmot_noise else "reference",
        },
        **compare_quality(native, tfmot),
    }


def compare_quality(native: dict, tfmot: dict) -> dict:
    """The issue-13 quality targets (QAT, PCQAT, MobileNet-style), from the .tflite files."""
    q_n, q_t = native["qat_int8"], tfmot["qat_int8"]
    c_n, c_t = native["pcqat_int8"], tfmot["pcqat_int8"]
    m_n, m_t = native["mobilenet_style"], tfmot["mobilenet_style"]
    qat_vs_tfmot = 100 * (q_n["accuracy"] - q_t["accuracy"])

    def in_file(entry: dict) -> dict:
        return {
            "min_sparsity": entry["min_sparsity"],
            "max_sparsity": entry["max_sparsity"],
            "max_unique_per_channel": entry["max_unique_per_channel"],
            "kernels": len(entry["kernels_in_tflite"]),
            "meets_target": entry["met"],
        }

    out = {
        "qat_accuracy_vs_tfmot": {
            "native": q_n["accuracy"],
            "tfmot": q_t["accuracy"],
            "native_minus_tfmot_points": qat_vs_tfmot,
            "target": (
                f"native >= TFMOT - {QAT_POINTS_VS_TFMOT} points (int8 .tflite of the QAT "
                "model, Optimize.DEFAULT)"
            ),
            "verdict": _verdict(qat_vs_tfmot >= -QAT_POINTS_VS_TFMOT),
        },
        "qat_accuracy_vs_float": {
            "native": q_n["accuracy"],
            "tfmot": q_t["accuracy"],
            "float32": q_n["float32_accuracy"],
            "native_drop_points": q_n["drop_vs_float32_points"],
            "tfmot_drop_points": q_t["drop_vs_float32_points"],
            "tfmot_meets_target": q_t["drop_vs_float32_points"] <= QAT_POINTS_VS_FLOAT,
            "target": f"native drop <= {QAT_POINTS_VS_FLOAT} point vs the float32 .tflite",
            "verdict": _verdict(q_n["drop_vs_float32_points"] <= QAT_POINTS_VS_FLOAT),
        },
        "pcqat_accuracy_vs_float": {
            "native": c_n["accuracy"],
            "tfmot": c_t["accuracy"],
            "float32": c_n["float32_accuracy"],
            "native_drop_points": c_n["drop_vs_float32_points"],
            "tfmot_drop_points": c_t["drop_vs_float32_points"],
            "tfmot_meets_target": c_t["drop_vs_float32_points"] <= PCQAT_POINTS_VS_FLOAT,
            "target": f"native drop <= {PCQAT_POINTS_VS_FLOAT} point vs the float32 .tflite",
            "verdict": _verdict(c_n["drop_vs_float32_points"] <= PCQAT_POINTS_VS_FLOAT),
        },
        "pcqat_gzipped_size_vs_float": {
            "native_bytes": c_n["gzipped_bytes"],
            "tfmot_bytes": c_t["gzipped_bytes"],
            "native_ratio": c_n["gzipped_ratio_vs_float32"],
            "tfmot_ratio": c_t["gzipped_ratio_vs_float32"],
            "tfmot_meets_target": c_t["gzipped_ratio_vs_float32"] <= PCQAT_SIZE_VS_FLOAT,
            "target": f"native <= {PCQAT_SIZE_VS_FLOAT}x the float32 .tflite (both gzipped)",
            "verdict": _verdict(c_n["gzipped_ratio_vs_float32"] <= PCQAT_SIZE_VS_FLOAT),
        },
        "pcqat_kernels_in_file": {
            "native": in_file(c_n),
            "tfmot": in_file(c_t),
            "target": c_n["target"] + " (native; read back from the .tflite)",
            "verdict": _verdict(c_n["met"]),
        },
        "mobilenet_agreement": {
            "native": m_n["top1_agreement_int8_vs_keras_qat"],
            "tfmot": m_t["top1_agreement_int8_vs_keras_qat"],
            "native_all_kernels_int8": m_n["all_kernels_int8"],
            "tfmot_all_kernels_int8": m_t["all_kernels_int8"],
            "samples": m_n["agreement_samples"],
            "tfmot_meets_target": m_t["top1_agreement_int8_vs_keras_qat"] >= AGREEMENT,
            "target": f"native >= {AGREEMENT:.0%} top-1 agreement, int8 file vs Keras QAT model",
            "verdict": _verdict(m_n["top1_agreement_int8_vs_keras_qat"] >= AGREEMENT),
        },
    }
    for engine, m in (("native", m_n), ("tfmot", m_t)):
        lat = m["latency"]
        out[f"mobilenet_latency_{engine}"] = {
            "float32_p50_ms": lat["float32_p50_ms"],
            "int8_p50_ms": lat["int8_p50_ms"],
            "int8_over_float32": lat["int8_over_float32"],
            "float32_over_int8_speedup": lat["float32_over_int8_speedup"],
            "spreads": {k: v for k, v in lat.items() if k.endswith("_spread")},
            "load_average_1min": [
                lat["window"]["load_average_1min_before"],
                lat["window"]["load_average_1min_after"],
            ],
            "across_processes": False,
            "target": "none (reference: int8 p50 next to float32 p50, alternating, 1 thread)",
            "noise": lat["noise"],
            "verdict": "noisy" if lat["noise"] else "reference",
        }
    return out


def _run_child(flavor: str, out: str, args: list[str]) -> tuple[dict, dict]:
    env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1" if flavor == "tf_keras" else "0",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, os.path.abspath(__file__), "--flavor", flavor, "--out", out, *args]
    print(f"[compression] {flavor} child: {' '.join(cmd[1:])}", flush=True)
    info = {"load_average_1min_at_start": _load()}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, check=False)
    info["seconds"] = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        raise RuntimeError(f"The {flavor} child failed (exit {proc.returncode}); see its output.")
    with open(out) as f:
        return json.load(f), info


def _flags(settings: dict) -> list[str]:
    """``settings`` as the command-line flags of this script."""
    return [item for k, v in settings.items() for item in (f"--{k.replace('_', '-')}", str(v))]


def main(out: str | None = None, **overrides: Any) -> dict:
    """Run the Keras 3 half, then the tf_keras half, in child processes; merge and write JSON.

    Args:
        out: String or None. Result JSON path (default ``benchmarks/results/compression.json``).
        **overrides: Settings among ``DEFAULTS`` (same for both children): ``epochs``
            (base training, once, under Keras 3), ``finetune`` (pruning fine-tuning;
            clustering: half), ``rounds`` and ``timing_epochs`` (step-time rounds, epochs
            per timed fit), ``qat_epochs``/``qat_lr`` (QAT fine-tuning, digits CNN and
            MobileNet-style), ``pcqat_epochs``/``pcqat_lr`` (per PCQAT stage),
            ``mobile_epochs`` (MobileNet-style training), ``latency_rounds``/``latency_runs``.

    Returns:
        The merged result dict.
    """
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"Unknown settings {unknown}; expected some of {sorted(DEFAULTS)}.")
    settings = {**DEFAULTS, **overrides}
    started = time.perf_counter()
    load_at_start = _load()
    runs, children = {}, {}
    with tempfile.TemporaryDirectory(prefix="kopt_compression_") as tmp:
        for flavor in FLAVORS:  # one after the other, never concurrently
            extra = ["--save-base", tmp] if flavor == "keras3" else ["--load-base", tmp]
            runs[flavor], children[flavor] = _run_child(
                flavor, os.path.join(tmp, f"{flavor}.json"), [*_flags(settings), *extra]
            )
    comparison = compare(runs["keras3"], runs["tf_keras"])
    result = {
        "benchmark": "compression",
        "engines": {"keras3": "native (keras_opt)", "tf_keras": "TFMOT"},
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "data": (
            "sklearn load_digits, 1400 train / 397 test (seeded permutation), 8x8x1; "
            f"MobileNet-style model: the same split upsampled (nearest) to "
            f"{MOBILE_SIZE}x{MOBILE_SIZE}x1"
        ),
        "settings": {
            "base_epochs": settings["epochs"],
            "prune_finetune_epochs": settings["finetune"],
            "cluster_finetune_epochs": max(1, settings["finetune"] // 2),
            "qat_finetune": f"{settings['qat_epochs']} epochs, Adam({settings['qat_lr']:g})",
            "pcqat_finetune": (
                f"{settings['pcqat_epochs']} epochs per stage, Adam({settings['pcqat_lr']:g})"
            ),
            "mobile_base_epochs": settings["mobile_epochs"],
            "batch_size": BATCH,
            "seed": SEED,
            "timing_rounds": settings["rounds"],
            "timing_epochs_per_fit": settings["timing_epochs"],
            "latency_rounds": settings["latency_rounds"],
            "latency_runs": settings["latency_runs"],
            "all": settings,
        },
        "base_model": (
            "trained once in the Keras 3 child (the digits CNN and the MobileNet-style model); "
            "their weights are loaded by layer name into the tf_keras child, so both engines "
            "start from the same weights"
        ),
        "verdict_basis": (
            "wall-clock step time (what a user waits for); the cpu_ratio fields (process CPU "
            "time, all threads) are less sensitive to other load and are reported alongside. "
            "Accuracy, size and agreement rows come from .tflite files: load cannot make them "
            "noisy"
        ),
        "noisy_when": (
            f"1-min load average > {NOISY_LOAD} (before or after the timing block) or repeats "
            f"spread (max - min) / median > {NOISY_SPREAD:.0%}; the load average includes this "
            "benchmark's own threads, other_processes_cores_used estimates everyone else's"
        ),
        "verdicts": {k: v["verdict"] for k, v in comparison.items()},
        "comparison": comparison,
        "children": children,
        "load_average_1min_at_start": load_at_start,
        "load_average_1min_at_end": _load(),
        "seconds": round(time.perf_counter() - started, 1),
        "keras3": runs["keras3"],
        "tf_keras": runs["tf_keras"],
    }
    path = out or os.path.join(HERE, "results", "compression.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result["verdicts"], indent=2))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, default in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--out", default=None, help="result JSON path")
    parser.add_argument(
        "--flavor", choices=FLAVORS, default=None, help="run one half only, in this process"
    )
    parser.add_argument("--save-base", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--load-base", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    chosen = {key: getattr(args, key) for key in DEFAULTS}
    if args.flavor is not None and args.out is None:
        parser.error("Argument `--out` is required with `--flavor` (the half's JSON path).")
    if args.flavor is None:
        main(args.out, **chosen)
    else:
        half = run_flavor(args.flavor, chosen, save_base=args.save_base, load_base=args.load_base)
        half["settings"] = chosen
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(half, f, indent=2)
        print(f"[compression] {args.flavor} half done in {half['seconds']} s: wrote {args.out}")
