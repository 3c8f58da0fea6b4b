"""Compression quality targets on a digits CNN, measured on int8 TFLite files.

Trains a CNN (Conv+BatchNorm, residual add, Dense) on sklearn's digits, then
measures, against the unoptimized model's int8 TFLite file:

* 80% pruning + int8: accuracy within 1.5 points, gzipped size <= 0.45x;
* 16-cluster + int8: accuracy within 1.5 points;
* PCQAT (50% sparsity, 16 clusters, QAT): the sparsity and <= 16 int8 values
  per output channel of every kernel, read back from the converted file.

Every number comes from a ``.tflite`` file run with the LiteRT interpreter.
Writes ``benchmarks/results/compression.json``. Measured, never asserted. TFMOT
needs tf_keras, so the script re-runs itself with ``TF_USE_LEGACY_KERAS=1``.

    python benchmarks/compression.py [--epochs 20] [--finetune 8] [--out JSON]
"""

from __future__ import annotations

import os
import sys

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    os.execve(
        sys.executable, [sys.executable, *sys.argv], {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    )
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_opt.optimization as kopt  # noqa: E402
from keras_opt.backend import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LOSS = "sparse_categorical_crossentropy"


def digits():
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    idx = np.random.RandomState(0).permutation(len(x))
    x, y = x[idx], d.target[idx]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def build():
    keras.utils.set_random_seed(0)
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


def tflite_accuracy(content: bytes, x, y) -> float:
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = inp["quantization"]
    hits = 0
    for image, label in zip(x, y, strict=True):
        data = image[None]
        if inp["dtype"] != np.float32:
            data = np.round(data / scale + zero).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], data)
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out["index"])) == label)
    return hits / len(y)


def gzipped(content: bytes) -> int:
    return len(gzip.compress(content, compresslevel=9))


def kernels_in_file(content: bytes) -> dict[str, dict]:
    """Sparsity and max distinct int8 values per output channel of each int8 kernel."""
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    out = {}
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.int8 or len(detail["shape"]) not in (2, 4):
            continue
        try:
            values = interpreter.get_tensor(detail["index"])
        except ValueError:
            continue
        if values.size < 64:
            continue
        per_channel = values.reshape(values.shape[0], -1)
        out[detail["name"]] = {
            "shape": [int(d) for d in values.shape],
            "sparsity": float(np.mean(values == 0)),
            "max_unique_per_channel": int(max(np.unique(row).size for row in per_channel)),
            "unique_in_tensor": int(np.unique(values).size),
        }
    return out


def main(epochs: int = 20, finetune: int = 8, out: str | None = None) -> dict:
    x, y, x_test, y_test = digits()
    x_cal = x[:200]
    base = compile_(build())
    base.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    base_int8 = to_int8(base, x_cal)
    base_acc = tflite_accuracy(base_int8, x_test, y_test)
    results: dict = {
        "benchmark": "compression",
        "flavor": "tf_keras",
        "tensorflow": tf.__version__,
        "platform": platform.platform(),
        "data": "sklearn load_digits, 1400 train / 397 test, 8x8x1",
        "baseline_int8": {
            "accuracy": base_acc,
            "bytes": len(base_int8),
            "gzipped_bytes": gzipped(base_int8),
        },
    }

    # 80% pruning + int8.
    pruned = compile_(kopt.prune(base, target_sparsity=0.8), lr=5e-4)
    pruned.fit(x, y, epochs=finetune, batch_size=32, verbose=0, callbacks=kopt.callbacks(pruned))
    pruned_int8 = to_int8(kopt.strip(pruned), x_cal)
    acc = tflite_accuracy(pruned_int8, x_test, y_test)
    ratio = gzipped(pruned_int8) / gzipped(base_int8)
    results["prune_80_int8"] = {
        "accuracy": acc,
        "accuracy_drop_points": 100 * (base_acc - acc),
        "gzipped_bytes": gzipped(pruned_int8),
        "gzipped_ratio": ratio,
        "kernel_sparsity": kopt.summary(kopt.strip(pruned)).sparsity,
        "target": "drop <= 1.5 points and gzipped ratio <= 0.45",
        "met": bool(100 * (base_acc - acc) <= 1.5 and ratio <= 0.45),
    }

    # 16 clusters + int8.
    clustered = compile_(kopt.cluster(base, 16), lr=1e-4)
    clustered.fit(x, y, epochs=max(1, finetune // 2), batch_size=32, verbose=0)
    stripped = kopt.strip(clustered)
    clustered_int8 = to_int8(stripped, x_cal)
    acc = tflite_accuracy(clustered_int8, x_test, y_test)
    results["cluster_16_int8"] = {
        "accuracy": acc,
        "accuracy_drop_points": 100 * (base_acc - acc),
        "gzipped_ratio": gzipped(clustered_int8) / gzipped(base_int8),
        "max_unique_per_kernel": max(row.unique_values for row in kopt.summary(stripped).layers),
        "target": "drop <= 1.5 points",
        "met": bool(100 * (base_acc - acc) <= 1.5),
    }

    # PCQAT, verified inside the .tflite file.
    qat = kopt.collaborative(
        base,
        x,
        y,
        recipe="pcqat",
        target_sparsity=0.5,
        number_of_clusters=16,
        epochs=max(1, finetune // 2),
        batch_size=32,
        optimizer=keras.optimizers.Adam(1e-4),
        metrics=["accuracy"],
    )
    pcqat_int8 = to_int8(qat)
    kernels = kernels_in_file(pcqat_int8)
    acc = tflite_accuracy(pcqat_int8, x_test, y_test)
    results["pcqat_int8"] = {
        "accuracy": acc,
        "accuracy_drop_points": 100 * (base_acc - acc),
        "gzipped_ratio": gzipped(pcqat_int8) / gzipped(base_int8),
        "kernels_in_tflite": kernels,
        "target": "every kernel keeps ~50% zeros and <= 16 int8 values per output channel",
        "met": bool(
            kernels
            and all(
                abs(k["sparsity"] - 0.5) <= 0.02 and k["max_unique_per_channel"] <= 16
                for k in kernels.values()
            )
        ),
    }

    path = out or os.path.join(HERE, "results", "compression.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps({k: v.get("met", v) for k, v in results.items() if isinstance(v, dict)}))
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--finetune", type=int, default=8)
    parser.add_argument("--out", default=None, help="result JSON path")
    main(**vars(parser.parse_args()))
