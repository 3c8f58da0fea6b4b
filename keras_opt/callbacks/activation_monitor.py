"""`ActivationMonitor`: per-layer activation statistics and dead units on a probe batch."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt import _validation as v
from keras_opt._plotting import new_figure, save_figure
from keras_opt._state import VariableSnapshot, read_value
from keras_opt.callbacks import _probe
from keras_opt.callbacks._base import Callback

logger = logging.getLogger(__name__)

__all__ = ["ActivationMonitor"]

_RELU_FAMILY = ("relu", "relu6")  # activations whose units can die (always output 0)


def _relu_like(layer: Any) -> bool:
    name = type(layer).__name__
    if name == "ReLU":
        slope = getattr(layer, "negative_slope", 0.0)
        threshold = getattr(layer, "threshold", 0.0)
        return float(slope or 0.0) == 0.0 and float(threshold or 0.0) >= 0.0
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) in _RELU_FAMILY


class ActivationMonitor(Callback):
    """Mean, std and dead-unit fraction of every layer's output, every N epochs.

    fastai's ``ActivationStats`` hooks every forward pass of training; this
    monitor instead runs the model once on a fixed probe batch
    (``training=True``, so BatchNorm uses batch statistics as in training;
    moving statistics and metric accumulators are put back afterwards) at the
    start of training and after every ``every_n_epochs`` epochs. A fixed batch
    makes the values comparable over time and costs one forward pass.

    The layers are the model's top-level layers (a nested model counts as one
    layer, its output is measured). A unit (the last axis: a Dense unit or a
    Conv channel) of a ReLU-family
    layer (``activation="relu"``/``"relu6"``, or a ``ReLU`` layer without
    negative slope) is *dead* when its output is 0 for every probe example and
    position. Layers whose dead fraction exceeds ``dead_threshold`` are
    reported with a logging warning.

    Values go to ``self.records`` (one dict per probe: layer -> ``mean``,
    ``std``, ``dead_fraction`` (None for non-ReLU layers) and ``histogram``)
    and to epoch logs as ``dead_fraction`` (largest over layers) and
    ``dead_layers`` (count above the threshold). With ``log_dir``, TensorBoard
    scalars and histograms (``activations/<layer>``) are written to
    ``<log_dir>/train``. With ``plot_dir``, ``activation_histograms.png``
    shows each layer's histogram over time (the "colorful dimension" plot of
    fastai's course: x = probe, y = activation value, colour = log count).

    Args:
        probe: Inputs ``x`` (array or structure), a tuple whose first element
            is ``x``, or a ``tf.data.Dataset`` (its first batch).
        every_n_epochs: Integer >= 1. Probe interval in epochs.
        dead_threshold: Float in [0, 1]. Dead fraction that triggers a warning.
        bins: Integer >= 2. Histogram bins.
        log_dir: Optional path. TensorBoard log directory.
        plot_dir: Optional path. Folder for the histogram-over-time PNG.

    Returns:
        A Keras callback of the flavor in use.

    Example:
        >>> import numpy as np
        >>> from keras_opt.callbacks import ActivationMonitor
        >>> monitor = ActivationMonitor(probe=np.zeros((16, 8, 8, 1), "float32"))
        >>> # model.fit(x, y, callbacks=[monitor]); monitor.records[-1]["conv"]["dead_fraction"]
    """

    def __init__(
        self,
        probe: Any,
        every_n_epochs: int = 1,
        dead_threshold: float = 0.5,
        bins: int = 40,
        log_dir: str | os.PathLike | None = None,
        plot_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        _probe.as_probe(probe, "probe", need_targets=False)
        v.integer("every_n_epochs", every_n_epochs, minimum=1)
        v.in_range("dead_threshold", dead_threshold, 0.0, 1.0)
        v.integer("bins", bins, minimum=2)
        for name, value in (("log_dir", log_dir), ("plot_dir", plot_dir)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                v.fail(name, "a path or None", value, exc=TypeError)
        self.probe = probe
        self.every_n_epochs = int(every_n_epochs)
        self.dead_threshold = float(dead_threshold)
        self.bins = int(bins)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.plot_dir = None if plot_dir is None else os.fspath(plot_dir)
        self.records: list[dict[str, Any]] = []

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments except ``probe`` (data is not configuration).

        Returns:
            Dict.
        """
        return {
            "every_n_epochs": self.every_n_epochs,
            "dead_threshold": self.dead_threshold,
            "bins": self.bins,
            "log_dir": self.log_dir,
            "plot_dir": self.plot_dir,
        }

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._x = _probe.as_probe(self.probe, "probe", need_targets=False)[0]
        self._layers = _probe.top_layers(self.model)
        self._extractor = _probe.intermediate_model(self.model, self._layers, "ActivationMonitor")
        self._state = _probe.state_variables(self.model)
        self.records = []
        self._last: dict[str, float] = {}
        self._writer = None
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "train"))
        if self.plot_dir is not None:
            os.makedirs(self.plot_dir, exist_ok=True)
        self._record(epoch=None)

    def measure(self) -> dict[str, dict[str, Any]]:
        """Statistics of every layer's output on the probe batch (no side effects).

        Returns:
            Dict layer name -> ``{"mean", "std", "dead_fraction", "histogram"}``;
            ``histogram`` is ``(counts, edges)``.
        """
        return self._stats(self._forward())

    def _forward(self) -> list[Any]:
        saved = VariableSnapshot.take(self._state)
        try:
            return _probe.run_intermediate(self._extractor, self._x)
        finally:
            saved.restore()

    def _stats(self, outputs: list[Any]) -> dict[str, dict[str, Any]]:
        stats = {}
        for layer, out in zip(self._layers, outputs, strict=False):
            flat = tf.nest.flatten(out)
            if len(flat) != 1:
                continue
            a = read_value(flat[0]).astype(np.float64)
            dead = None
            if _relu_like(layer) and a.ndim >= 2:
                units = a.reshape(-1, a.shape[-1])
                dead = float(np.mean(np.all(units <= 0.0, axis=0)))
            finite = a[np.isfinite(a)]
            counts, edges = np.histogram(finite, bins=self.bins) if finite.size else ([], [])
            stats[layer.name] = {
                "mean": float(np.mean(a)),
                "std": float(np.std(a)),
                "dead_fraction": dead,
                "histogram": (np.asarray(counts), np.asarray(edges)),
            }
        return stats

    def _record(self, epoch: int | None) -> None:
        outputs = self._forward()
        stats = self._stats(outputs)
        step = 0 if epoch is None else epoch + 1
        self.records.append({"epoch": epoch, "layers": stats})
        dead = {n: s["dead_fraction"] for n, s in stats.items() if s["dead_fraction"] is not None}
        bad = sorted(n for n, f in dead.items() if f > self.dead_threshold)
        if bad:
            logger.warning(
                "ActivationMonitor: dead ReLU units after epoch %s: %s.",
                epoch,
                ", ".join(f"{n} ({dead[n]:.0%})" for n in bad),
            )
        self._last = {
            "dead_fraction": max(dead.values()) if dead else 0.0,
            "dead_layers": float(len(bad)),
        }
        if self._writer is not None:
            with self._writer.as_default(step=step):
                for layer, out in zip(self._layers, outputs, strict=False):
                    if layer.name not in stats:
                        continue
                    s = stats[layer.name]
                    tf.summary.scalar(f"activations/{layer.name}/mean", s["mean"])
                    tf.summary.scalar(f"activations/{layer.name}/std", s["std"])
                    if s["dead_fraction"] is not None:
                        tf.summary.scalar(
                            f"activations/{layer.name}/dead_fraction", s["dead_fraction"]
                        )
                    tf.summary.histogram(f"activations/{layer.name}", tf.nest.flatten(out)[0])

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every_n_epochs == 0:
            self._record(epoch)
        if logs is not None:
            logs.update(self._last)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        if self.plot_dir is not None:
            self.plot(os.path.join(self.plot_dir, "activation_histograms.png"))

    def plot(self, path: str | os.PathLike) -> str:
        """Save the histogram-over-time ("colorful dimension") plot of each layer.

        Args:
            path: String or path of the PNG.

        Returns:
            The path written, as a string.
        """
        if not self.records:
            raise ValueError("ActivationMonitor has no records yet: run `fit` first.")
        names = list(self.records[0]["layers"])
        fig = new_figure((7, 1.6 * len(names)))
        axes = fig.subplots(len(names), 1, squeeze=False)
        for ax, name in zip(axes[:, 0], names, strict=False):
            hists = [r["layers"][name]["histogram"] for r in self.records if name in r["layers"]]
            finite_edges = [e for _, e in hists if len(e)]
            if not finite_edges:
                continue
            low = min(float(e[0]) for e in finite_edges)
            high = max(float(e[-1]) for e in finite_edges)
            grid = np.linspace(low, high if high > low else low + 1.0, self.bins + 1)
            image = np.zeros((self.bins, len(hists)))
            for j, (counts, edges) in enumerate(hists):
                if len(edges):
                    centers = (edges[:-1] + edges[1:]) / 2
                    image[:, j] = np.histogram(centers, bins=grid, weights=counts)[0]
            ax.imshow(
                np.log1p(image),
                origin="lower",
                aspect="auto",
                extent=(0, len(hists), grid[0], grid[-1]),
                cmap="viridis",
            )
            ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        axes[-1, 0].set_xlabel("probe (0 = start of training)")
        fig.tight_layout()
        return save_figure(fig, path, dpi=90)
