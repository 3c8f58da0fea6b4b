"""``keras-opt demo``: the whole road on sklearn's digits, no download needed.

1. LR range test on a Conv + BatchNorm + residual CNN;
2. training with a one-cycle schedule, TrainingMonitor, GradientMonitor and NaNGuard;
3. PCQAT: prune (50%), cluster (16 values, sparsity-preserving), QAT (BN folded,
   ReLU fused), fine-tuning each stage with a one-cycle schedule;
4. export of every TFLite variant of both models, each measured (size, LiteRT
   latency, accuracy of the artifact on the held-out digits);
5. a report: ``report.md``, ``manifest.json`` and a self-contained ``report.html``.

It runs in the Keras flavor in use: Keras 3 by default (keras_opt's native
compression engine), tf_keras with ``TF_USE_LEGACY_KERAS=1`` (TFMOT).
keras_opt's own warnings (TrainingMonitor events ...) go to OUT/logs/keras_opt.log.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

#: PCQAT fine-tuning per stage: epochs, and the one-cycle peak LR (Adam). Measured under
#: Keras 3 on --seed 0..5, PCQAT int8 minus baseline int8 TFLite test accuracy, in points
#: (1 point = 4 test images): 3 epochs at 1e-3: -0.76, 0, 0, 0, +0.76, -0.25; 2 epochs at
#: 1e-3: worst -1.26, mean -0.42 (earlier engine: 2 epochs at 2e-3 worst -0.76, at 5e-4 -1.26).
FINETUNE_EPOCHS = 3
FINETUNE_MAX_LR = 1e-3
#: The last VAL_SAMPLES training images validate (training and fine-tuning alike).
VAL_SAMPLES = 140


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
        default=FINETUNE_EPOCHS,
        help=f"fine-tuning epochs per PCQAT stage (default {FINETUNE_EPOCHS})",
    )
    p.add_argument("--runs", type=int, default=50, help="timed LiteRT runs per variant")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _step(i: int, n: int, text: str) -> None:
    print(f"[{i}/{n}] {text}", flush=True)


@contextlib.contextmanager
def _log_to_file(path: str) -> Iterator[None]:
    """Send keras_opt's log records (TrainingMonitor events ...) to ``path``, not the terminal."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("keras_opt")
    propagate = root.propagate
    root.addHandler(handler)
    root.propagate = False
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.propagate = propagate
        handler.close()


def _engine_facts(flavor: str) -> tuple[str, str]:
    """(Keras flavor, compression engine), with versions, for the report."""
    from importlib import metadata

    from keras_opt.backend import keras

    if flavor == "tf_keras":
        tfmot = metadata.version("tensorflow-model-optimization")
        return f"tf_keras {keras.__version__} (TF_USE_LEGACY_KERAS=1)", f"TFMOT {tfmot}"
    return f"Keras 3 ({keras.__version__})", "keras_opt native engine (Keras 3)"


def _stage_printer(stages: tuple[str, ...]) -> Any:
    """A callback that prints one line per fine-tuning stage (the same one for every stage)."""
    from keras_opt.backend import keras

    class StagePrinter(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.stage, self.start = 0, 0.0
            self.epoch_logs: dict[str, Any] = {}

        def __deepcopy__(self, memo: dict) -> Any:
            return self  # `collaborative` copies callbacks per stage: keep one stage counter

        def on_train_begin(self, logs: Any = None) -> None:
            self.start, self.epoch_logs = time.time(), {}

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epoch_logs = dict(logs or {})

        def on_train_end(self, logs: Any = None) -> None:
            name = stages[min(self.stage, len(stages) - 1)]
            self.stage += 1
            print(
                f"      {name:<8} loss {self.epoch_logs.get('loss', float('nan')):.4f}  "
                f"val_acc {self.epoch_logs.get('val_accuracy', float('nan')):.4f}  "
                f"({time.time() - self.start:.0f}s)",
                flush=True,
            )

    return StagePrinter()


def _values_per_channel(model: Any) -> int:
    """The most distinct kernel values in one output channel, over the model's kernels."""
    import numpy as np

    most = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None or len(kernel.shape) < 2:
            continue
        columns = np.asarray(kernel).reshape(-1, kernel.shape[-1])
        most = max(most, max(np.unique(columns[:, c]).size for c in range(columns.shape[1])))
    return most


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
    from keras_opt.cli import CLIError

    for name in ("epochs", "finetune_epochs", "runs"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise CLIError(f"{flag} must be >= 1. Received: {getattr(args, name)}")
    from keras_opt.cli._quiet import quiet_tensorflow

    quiet_tensorflow()
    out = args.out
    logs = os.path.join(out, "logs")
    os.makedirs(logs, exist_ok=True)
    with _log_to_file(os.path.join(logs, "keras_opt.log")):
        return _run(args, out, logs)


def _run(args: argparse.Namespace, out: str, logs: str) -> int:
    t0 = time.time()
    n = 5
    from keras_opt.backend import flavor, keras
    from keras_opt.callbacks import (
        GradientMonitor,
        LRScheduler,
        NaNGuard,
        TrainingMonitor,
        find_lr,
    )
    from keras_opt.cli._quiet import redirect_fds
    from keras_opt.datasets import digits, digits_cnn
    from keras_opt.optimization import collaborative, compression_summary, strip
    from keras_opt.schedules import OneCycle
    from keras_opt.tflite import export, write_comparison
    from keras_opt.tflite._comparison import comparison_rows, format_rows, recommend_comparison
    from keras_opt.tflite._recommend import recommendation_lines

    keras_flavor, engine = _engine_facts(flavor())
    print(
        "keras-opt demo: sklearn digits (1,797 8x8 images), Conv+BN+residual CNN; "
        f"{keras_flavor}, compression: {engine}"
    )
    x_train, y_train, x_test, y_test = digits(seed=args.seed)
    fit_x, fit_y = x_train[:-VAL_SAMPLES], y_train[:-VAL_SAMPLES]
    val = (x_train[-VAL_SAMPLES:], y_train[-VAL_SAMPLES:])
    model = digits_cnn(seed=args.seed)

    _step(1, n, "LR range test (100 steps, weights restored afterwards) ...")
    lr_plot = os.path.join(out, "lr_finder.png")
    found = find_lr(model, x_train, y_train, num_steps=100, plot=lr_plot)
    lr = found.suggested_lr
    print(f"      suggested LR {lr:.2e} ({found.rule} rule)")

    _step(
        2, n, f"training {args.epochs} epochs: one-cycle (max_lr={3 * lr:.1e}), monitors, NaNGuard"
    )
    monitor = TrainingMonitor(log_dir=os.path.join(logs, "training"), batch_size=32)
    guard = NaNGuard()
    callbacks = [
        LRScheduler(OneCycle(max_lr=3 * lr)),
        monitor,
        GradientMonitor(probe=(x_train[:64], y_train[:64])),
        guard,
    ]
    history = model.fit(
        fit_x,
        fit_y,
        batch_size=32,
        epochs=args.epochs,
        validation_data=val,
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
    kinds: dict[str, int] = {}
    for event in monitor.events:
        kinds[event["kind"]] = kinds.get(event["kind"], 0) + 1
    events = ", ".join(f"{k} {c}" for k, c in sorted(kinds.items())) or "none"
    print(
        f"      test accuracy {base_acc:.4f}; health events: {events}; "
        f"NaNGuard rescues: {len(guard.rescues)} (details: {os.path.join(logs, 'keras_opt.log')})"
    )

    stages = ("prune", "cluster", "quantize")
    _step(
        3,
        n,
        f"PCQAT: prune 50% -> cluster 16 (sparsity-preserving) -> QAT, {args.finetune_epochs} "
        f"epoch(s) each, one-cycle (max_lr={FINETUNE_MAX_LR:.0e})",
    )
    compressed = collaborative(
        model,
        fit_x,
        fit_y,
        recipe="pcqat",
        target_sparsity=0.5,
        number_of_clusters=16,
        epochs=args.finetune_epochs,
        batch_size=32,
        validation_data=val,
        optimizer=keras.optimizers.Adam(FINETUNE_MAX_LR),
        metrics=["accuracy"],
        callbacks=[LRScheduler(OneCycle(max_lr=FINETUNE_MAX_LR)), _stage_printer(stages)],
    )
    _, qat_acc = compressed.evaluate(x_test, y_test, verbose=0)
    stripped = strip(compressed)
    layers = compression_summary(stripped)
    per_channel = _values_per_channel(stripped)
    per_kernel = max(r.unique_values for r in layers.layers)
    print(
        f"      QAT model test accuracy {qat_acc:.4f}; kernel sparsity {layers.sparsity:.1%}, "
        f"<= {per_channel} shared values per output channel"
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
        "Keras flavor": keras_flavor,
        "Compression engine": engine,
        "LR finder suggestion": f"{lr:.2e} ({found.rule})",
        "Keras test accuracy (baseline)": f"{base_acc:.4f}",
        "Keras test accuracy (PCQAT, QAT model)": f"{qat_acc:.4f}",
        "PCQAT fine-tuning": (
            f"{args.finetune_epochs} epoch(s) per stage, Adam, one-cycle max_lr {FINETUNE_MAX_LR:g}"
        ),
        "PCQAT kernel sparsity (read from the weights)": f"{layers.sparsity:.1%}",
        "PCQAT max unique values per output channel": per_channel,
        "PCQAT max unique values per kernel (stripped float model)": per_kernel,
    }
    images = {"LR range test": lr_plot}
    curves = os.path.join(logs, "training", "training_curves.png")
    if os.path.exists(curves):
        images["Training curves (TrainingMonitor)"] = curves
    paths = write_comparison(
        out, results, title="keras-opt demo: digits", summary=summary_facts, images=images
    )
    print()
    print("\n".join(recommendation_lines(recommend_comparison(results))))  # what to ship first
    print()
    print(format_rows(comparison_rows(results)))
    print()
    print(f"Report: {os.path.abspath(paths['html'])}")
    print(f"        {os.path.abspath(paths['markdown'])} and manifest.json")
    print(f"Done in {time.time() - t0:.0f}s.")
    return 0
