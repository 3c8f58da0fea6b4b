"""Story: watch a real training run — speed, true batch loss, gradients, activations — and
survive a divergence.

A residual CNN (Conv + BatchNorm + residual add) trains on sklearn's digits with
keras_opt's four monitors next to Keras' own TensorBoard callback. Halfway
through the first epoch the LR is set absurdly high for one step (as a bad
schedule would): the loss turns NaN, TrainingMonitor reports the divergence,
NaNGuard restores the weights from before the bad step, cuts the LR and
training goes on.

    python examples/training_monitors.py [--out runs/monitors] [--epochs 4]
    tensorboard --logdir runs/monitors/tb
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import keras  # noqa: E402
from keras_opt.callbacks import (  # noqa: E402
    ActivationMonitor,
    GradientMonitor,
    NaNGuard,
    TrainingMonitor,
)
from tests.conftest import build_residual_cnn, compile_classifier  # noqa: E402


class OneBadStep(keras.callbacks.Callback):
    """Sets a huge LR for one step of the first epoch (the fault NaNGuard repairs)."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 7 and not getattr(self, "done", False):
            self.done = True
            self.model.optimizer.learning_rate.assign(1e38)


def main(out: str = "runs/monitors", epochs: int = 4, samples: int = 1400) -> dict:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target
    x_train, y_train, x_test, y_test = x[:samples], y[:samples], x[1400:], y[1400:]
    model = compile_classifier(build_residual_cnn(), keras.optimizers.Adam(2e-3))
    tb_dir = os.path.join(out, "tb")
    monitor = TrainingMonitor(log_dir=out, batch_size=50)
    gradients = GradientMonitor(
        probe=(x_train[:50], y_train[:50]), every_n_steps=10, log_dir=tb_dir
    )
    activations = ActivationMonitor(probe=x_train[:200], log_dir=tb_dir, plot_dir=out)
    guard = NaNGuard(factor=0.5)
    model.fit(
        x_train,
        y_train,
        batch_size=50,
        epochs=epochs,
        validation_data=(x_test, y_test),
        callbacks=[
            OneBadStep(),
            monitor,
            gradients,
            activations,
            guard,
            keras.callbacks.TensorBoard(tb_dir),
        ],
        verbose=0,
    )
    last = monitor.history[-1]
    summary = {
        "events": [e["message"] for e in monitor.events],
        "rescues": guard.rescues,
        "val_accuracy": float(np.asarray(last["val_accuracy"])),
        "samples_per_sec": last["samples_per_sec"],
        "grad_norm": gradients.records[-1]["grad_norm"],
        "layer_norms": gradients.records[-1]["layer_norms"],
        "dead_fraction": {
            name: s["dead_fraction"]
            for name, s in activations.records[-1]["layers"].items()
            if s["dead_fraction"] is not None
        },
        "files": sorted(os.listdir(out)),
    }
    print("events:", *summary["events"], sep="\n  ")
    print(f"NaNGuard rescues: {len(guard.rescues)}; val accuracy {summary['val_accuracy']:.3f}")
    print(
        f"throughput {summary['samples_per_sec']:.0f} samples/s, grad norm "
        f"{summary['grad_norm']:.3g}"
    )
    print("dead ReLU fraction:", summary["dead_fraction"])
    print("written to", out, ":", summary["files"])
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/monitors")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    main(args.out, args.epochs)
