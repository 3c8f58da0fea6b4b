"""History files of `TrainingMonitor`: JSON, CSV and a PNG of the curves."""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

from keras_opt._plotting import new_figure, save_figure

TIMING = ("epoch_time", "step_time", "steps_per_sec", "samples_per_sec")
FLAGS = ("diverged", "loss_spikes", "plateau", "overfitting")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_json_safe(x) for x in value]
    return value


def write_all(
    directory: str,
    history: list[dict[str, Any]],
    events: list[dict[str, Any]],
    batch_losses: list[list[float]],
) -> dict[str, str]:
    """Write ``history.json``, ``history.csv`` and ``training_curves.png``."""
    os.makedirs(directory, exist_ok=True)
    paths = {
        "json": os.path.join(directory, "history.json"),
        "csv": os.path.join(directory, "history.csv"),
        "png": os.path.join(directory, "training_curves.png"),
    }
    payload = {"epochs": history, "events": events, "batch_losses": batch_losses}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(_json_safe(payload), f, indent=2)
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    with open(paths["csv"], "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    plot(paths["png"], history, batch_losses)
    return paths


def plot(path: str, history: list[dict[str, Any]], batch_losses: list[list[float]]) -> str:
    """Loss (epoch and batch), other metrics and LR against epochs, as one PNG."""
    fig = new_figure((14, 4))
    axes = fig.subplots(1, 3)
    epochs = [row["epoch"] for row in history]
    ax = axes[0]
    for i, losses in enumerate(batch_losses):
        if losses:
            start = epochs[i] if i < len(epochs) else i
            xs = [start + (j + 1) / len(losses) for j in range(len(losses))]
            ax.plot(xs, losses, color="lightgray", linewidth=0.8)
    for key in ("loss", "val_loss"):
        if any(key in row for row in history):
            ax.plot(
                [e + 1 for e in epochs],
                [row.get(key, math.nan) for row in history],
                marker="o",
                label=key,
            )
    ax.set_xlabel("epoch")
    ax.set_title("loss (gray: batch loss)")
    ax.legend()
    ax = axes[1]
    skip = {
        "epoch",
        "loss",
        "val_loss",
        "learning_rate",
        "batch_loss",
        "loss_spike",
        *TIMING,
        *FLAGS,
    }
    for key in sorted({k for row in history for k in row} - skip):
        ax.plot(epochs, [row.get(key, math.nan) for row in history], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_title("metrics")
    if ax.lines:
        ax.legend()
    ax = axes[2]
    if any("learning_rate" in row for row in history):
        lrs = [row.get("learning_rate", math.nan) for row in history]
        ax.plot(epochs, lrs, marker="o")
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("learning rate")
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
