"""``keras-opt demo``: the whole road on sklearn's digits, no download needed.

1. LR range test on a Conv + BatchNorm + residual CNN;
2. training with a one-cycle schedule, TrainingMonitor, GradientMonitor and NaNGuard;
3. PCQAT: prune (50%), cluster (16 values, sparsity-preserving), QAT, fine-tuning each;
4. export of every TFLite variant of both models, each measured (size, LiteRT
   latency, accuracy of the artifact on the held-out digits);
5. a report: ``report.md``, ``manifest.json`` and a self-contained ``report.html``.

TFMOT needs the tf_keras flavor, so the demo runs with ``TF_USE_LEGACY_KERAS=1``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

LEGACY_ENV_VAR = "TF_USE_LEGACY_KERAS"  # as keras_opt.backend; not imported here (it loads TF)


def register(sub: Any) -> None:
    """Add the ``demo`` sub-command to ``sub`` (an argparse sub-parsers object)."""
    p = sub.add_parser(
        "demo",
        help="run the end-to-end pipeline on sklearn's digits (no download)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="tflite_models/digits", help="output folder")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=2,
        help="fine-tuning epochs per PCQAT stage (default 2)",
    )
    p.add_argument("--runs", type=int, default=50, help="timed LiteRT runs per variant")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _data(seed: int) -> tuple:
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int64")
    idx = np.random.RandomState(seed).permutation(len(x))
    x, y = x[idx], y[idx]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def build_cnn(keras: Any, seed: int = 0) -> Any:
    """The demo's CNN: Conv + BatchNorm stem, a residual block, a Dense head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    r = keras.layers.Conv2D(16, 3, padding="same", name="res_conv")(x)
    r = keras.layers.BatchNormalization(momentum=0.9, name="res_bn")(r)
    x = keras.layers.ReLU(name="res_relu")(keras.layers.Add(name="res_add")([x, r]))
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def _step(i: int, n: int, text: str) -> None:
    print(f"[{i}/{n}] {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
    from keras_opt.cli import CLIError

    for name in ("epochs", "finetune_epochs", "runs"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise CLIError(f"{flag} must be >= 1. Received: {getattr(args, name)}")
    if "tensorflow" not in sys.modules:
        os.environ[LEGACY_ENV_VAR] = "1"  # TFMOT (PCQAT) needs tf_keras
    elif os.environ.get(LEGACY_ENV_VAR) != "1":
        raise CLIError(
            "the demo's PCQAT step needs tf_keras, but TensorFlow was already imported with "
            f"Keras 3. Run `keras-opt demo` in a fresh process or set {LEGACY_ENV_VAR}=1."
        )
    from keras_opt.cli._quiet import quiet_tensorflow

    quiet_tensorflow()
    t0 = time.time()
    n = 5
    out = args.out
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    print("keras-opt demo: sklearn digits (1,797 8x8 images), Conv+BN+residual CNN, tf_keras")

    from keras_opt.backend import keras
    from keras_opt.callbacks import (
        GradientMonitor,
        LRScheduler,
        NaNGuard,
        TrainingMonitor,
        find_lr,
    )
    from keras_opt.cli._quiet import redirect_fds
    from keras_opt.optimization import collaborative, summary
    from keras_opt.schedules import OneCycle
    from keras_opt.tflite import export, write_comparison
    from keras_opt.tflite.comparison import comparison_rows, format_rows

    x_train, y_train, x_test, y_test = _data(args.seed)
    model = build_cnn(keras, args.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    _step(1, n, "LR range test (100 steps, weights restored afterwards) ...")
    lr_plot = os.path.join(out, "lr_finder.png")
    found = find_lr(model, x_train, y_train, num_steps=100, plot=lr_plot)
    lr = found.suggested_lr
    print(f"      suggested LR {lr:.2e} ({found.rule} rule)")

    _step(
        2, n, f"training {args.epochs} epochs: one-cycle (max_lr={3 * lr:.1e}), monitors, NaNGuard"
    )
    monitor = TrainingMonitor(log_dir=os.path.join(logs, "training"), batch_size=32)
    callbacks = [
        LRScheduler(OneCycle(max_lr=3 * lr)),
        monitor,
        GradientMonitor(probe=(x_train[:64], y_train[:64])),
        NaNGuard(),
    ]
    history = model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=args.epochs,
        validation_split=0.1,
        callbacks=callbacks,
        verbose=0,
    )
    h = history.history
    for e in range(len(h["loss"])):
        print(
            f"      epoch {e + 1:2d}  loss {h['loss'][e]:.4f}  val_acc {h['val_accuracy'][e]:.4f}"
            f"  lr {h['learning_rate'][e]:.1e}"
        )
    _, base_acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"      test accuracy {base_acc:.4f}; health events: {len(monitor.events)}")

    _step(3, n, "PCQAT: prune 50% -> cluster 16 (sparsity-preserving) -> QAT, fine-tuning each")
    compressed = collaborative(
        model,
        x_train,
        y_train,
        recipe="pcqat",
        target_sparsity=0.5,
        number_of_clusters=16,
        epochs=args.finetune_epochs,
        batch_size=32,
        optimizer=keras.optimizers.Adam(3e-4),
        metrics=["accuracy"],
    )
    _, qat_acc = compressed.evaluate(x_test, y_test, verbose=0)
    layers = summary(compressed)
    print(
        f"      QAT model test accuracy {qat_acc:.4f}; kernel sparsity {layers.sparsity:.1%}, "
        f"<= {max(r.unique_values for r in layers.layers)} unique values per kernel"
    )

    _step(4, n, "exporting every TFLite variant of both models (measured from the files) ...")
    results = {}
    for label, m in (("baseline", model), ("pcqat", compressed)):
        with redirect_fds(os.path.join(logs, f"export_{label}.log")):
            results[label] = export(
                m,
                os.path.join(out, label),
                representative_data=x_train[:200],
                eval_data=(x_test, y_test),
                runs=args.runs,
                isolation="export",
            )
        print(f"      {label}: {len(results[label].variants)} variants -> {results[label].out_dir}")

    _step(5, n, "writing the report ...")
    summary_facts = {
        "Keras flavor": "tf_keras",
        "LR finder suggestion": f"{lr:.2e} ({found.rule})",
        "Keras test accuracy (baseline)": f"{base_acc:.4f}",
        "Keras test accuracy (PCQAT, QAT model)": f"{qat_acc:.4f}",
        "PCQAT kernel sparsity (read from the weights)": f"{layers.sparsity:.1%}",
        "PCQAT max unique values per kernel": max(r.unique_values for r in layers.layers),
    }
    images = {"LR range test": lr_plot}
    curves = os.path.join(logs, "training", "training_curves.png")
    if os.path.exists(curves):
        images["Training curves (TrainingMonitor)"] = curves
    paths = write_comparison(
        out, results, title="keras-opt demo: digits", summary=summary_facts, images=images
    )
    print()
    print(format_rows(comparison_rows(results)))
    print()
    print(f"Report: {os.path.abspath(paths['html'])}")
    print(f"        {os.path.abspath(paths['markdown'])} and manifest.json")
    print(f"Done in {time.time() - t0:.0f}s.")
    return 0
