"""`GradientMonitor`: per-layer gradient health while ``model.fit`` runs."""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt import _validation as v
from keras_opt._state import read_value
from keras_opt.backend import is_tf_keras
from keras_opt.callbacks import _probe
from keras_opt.callbacks._base import Callback

__all__ = ["GradientMonitor"]

logger = logging.getLogger(__name__)


class GradientMonitor(Callback):
    """Global and per-layer gradient norms and update/weight ratios every N steps.

    **How the gradients are obtained (the trade-off).** Every ``every_n_steps``
    training steps, as a batch begins, the monitor computes the gradients of
    the compiled loss on a fixed *probe batch* with ``tf.GradientTape`` in its
    own ``tf.function``, at the current weights. The alternative, wrapping the
    optimizer the way Keras' ``LossScaleOptimizer`` does, sees the real
    gradients of every step but changes the traced train step, breaks with
    custom ``train_step`` overrides and with strategies that aggregate
    gradients themselves, and costs a device-to-host copy on every step. The
    probe costs one forward and backward pass on the probe batch every N
    steps and nothing in between: the monitor uses only batch-*begin* hooks,
    because Keras 3 runs any callback that overrides ``on_train_batch_end``
    synchronously and converts every step's logs to Python numbers. It works
    unchanged with ``steps_per_execution > 1`` (the hooks then see every k-th
    step; the probe runs at the first hook at least N steps after the last
    one), with any ``train_step`` and under ``MirroredStrategy``. The price:
    the gradients are those of the probe batch, not of the batch the
    optimizer uses next; with a fixed probe, successive values are comparable
    (no batch-to-batch noise). Use a probe about the size of a training batch.

    * **BatchNorm statistics:** the probe runs the model with
      ``training=True`` (so BatchNorm uses batch statistics, as in training),
      and puts every non-trainable variable and metric accumulator back
      afterwards, inside the same ``tf.function``: moving means/variances and
      the running loss shown by Keras are left untouched.
    * **Mixed precision:** the loss is multiplied by the optimizer's current
      loss scale (``LossScaleOptimizer``) before differentiation and the
      gradients are divided by it, in float32: values are the true, unscaled
      gradients, without float16 underflow.
    * **Update/weight ratio:** ``||w_after - w_before|| / ||w_before||`` per
      layer over the optimizer step(s) that follow the probe (one step, or
      ``steps_per_execution`` steps), from on-device copies of the weights;
      the record is completed at the next batch-begin (or epoch-end) hook.

    Flags (each a logging warning and a 0/1 key in ``logs``):

    * ``grad_vanishing``: some layer's gradient norm is below
      ``vanishing_threshold`` times the largest layer's norm in the same probe
      (default 1e-4: four orders of magnitude between layers of one network,
      the depth effect analysed by Glorot & Bengio, 2010, "Understanding the
      difficulty of training deep feedforward neural networks").
    * ``grad_exploding``: the global norm is non-finite or above
      ``exploding_threshold`` (default 1e3; gradient clipping thresholds in
      practice are 1-10, Pascanu et al., 2013, "On the difficulty of training
      recurrent neural networks"), or some layer's update/weight ratio exceeds
      ``max_update_ratio`` (default 0.1, i.e. 100 times the ~1e-3 that
      Karpathy's CS231n notes give as healthy, "Babysitting the learning
      process").

    Keys written to epoch logs (so to ``History``, ``CSVLogger`` and Keras'
    ``TensorBoard``), from the epoch's last probe: ``grad_norm`` (global),
    ``update_ratio`` (largest over layers), ``grad_vanishing``,
    ``grad_exploding``. Every probe is in ``self.records`` (one dict per
    probe: ``step`` = steps done before it, ``epoch``, ``loss``,
    ``grad_norm``, ``layer_norms``, ``update_ratios``, flags) and, with ``log_dir``, in TensorBoard
    under ``gradients/<layer>/norm`` and ``gradients/<layer>/update_ratio``,
    written to ``<log_dir>/train`` next to Keras' TensorBoard callback's files.

    Args:
        probe: Tuple ``(x, y)`` or ``(x, y, sample_weight)`` of arrays, or a
            ``tf.data.Dataset`` (its first batch is used). Keep it small
            (e.g. 32-128 training examples).
        every_n_steps: Integer >= 1. Probe interval in training steps. At the
            default (100) the probe costs well under 5% of fit time (see
            ``benchmarks/callback_overhead.py``).
        vanishing_threshold: Float in (0, 1). See above.
        exploding_threshold: Float > 0. See above.
        max_update_ratio: Float > 0. See above.
        log_dir: Optional path. TensorBoard log directory.
        verbose: Integer. 1 logs each probe at INFO level.

    Returns:
        A Keras callback of the flavor in use.

    Example:
        >>> import numpy as np
        >>> from keras_opt.callbacks import GradientMonitor
        >>> x = np.zeros((8, 4), "float32"); y = np.zeros((8,), "float32")
        >>> monitor = GradientMonitor(probe=(x, y), every_n_steps=100)
        >>> # model.fit(x, y, callbacks=[monitor]); monitor.records[-1]["grad_norm"]
    """

    def __init__(
        self,
        probe: Any,
        every_n_steps: int = 100,
        vanishing_threshold: float = 1e-4,
        exploding_threshold: float = 1e3,
        max_update_ratio: float = 0.1,
        log_dir: str | os.PathLike | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        _probe.as_probe(probe, "probe", need_targets=True)
        v.integer("every_n_steps", every_n_steps, minimum=1)
        v.in_range(
            "vanishing_threshold",
            vanishing_threshold,
            0.0,
            1.0,
            low_inclusive=False,
            high_inclusive=False,
        )
        v.positive("exploding_threshold", exploding_threshold)
        v.positive("max_update_ratio", max_update_ratio)
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            v.fail("log_dir", "a path or None", log_dir, exc=TypeError)
        v.integer("verbose", verbose, minimum=0)
        self.probe = probe
        self.every_n_steps = int(every_n_steps)
        self.vanishing_threshold = float(vanishing_threshold)
        self.exploding_threshold = float(exploding_threshold)
        self.max_update_ratio = float(max_update_ratio)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.verbose = int(verbose)
        self.records: list[dict[str, Any]] = []

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments except ``probe`` (data is not configuration).

        Returns:
            Dict.
        """
        return {
            "every_n_steps": self.every_n_steps,
            "vanishing_threshold": self.vanishing_threshold,
            "exploding_threshold": self.exploding_threshold,
            "max_update_ratio": self.max_update_ratio,
            "log_dir": self.log_dir,
            "verbose": self.verbose,
        }

    # -- graph functions -----------------------------------------------------

    def _build_functions(self) -> None:
        model = self.model
        trainable = list(model.trainable_variables)
        state = _probe.state_variables(model)

        def probe_fn(x: Any, y: Any, sw: Any) -> tuple[Any, Any]:
            saved = [tf.identity(s) for s in state]
            scale = tf.cast(_probe.loss_scale(model), tf.float32)
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = tf.cast(_probe.compute_loss(model, x, y, y_pred, sw), tf.float32)
                scaled = loss * scale
            grads = tape.gradient(scaled, trainable)
            squares = []
            for g in grads:
                if g is None:
                    squares.append(tf.zeros((), tf.float32))
                    continue
                g = tf.convert_to_tensor(g)
                g = tf.cast(g, tf.float32) / scale
                squares.append(tf.reduce_sum(tf.square(g)))
            with tf.control_dependencies(squares):
                for s, value in zip(state, saved, strict=False):
                    s.assign(value)
            return loss, tf.stack(squares) if squares else tf.zeros((0,))

        def copy_fn() -> list[Any]:
            return [tf.identity(w) for w in trainable]

        def ratio_fn(before: list[Any]) -> tuple[Any, Any]:
            delta, norm = [], []
            for w, b in zip(trainable, before, strict=False):
                b = tf.cast(b, tf.float32)
                delta.append(tf.reduce_sum(tf.square(tf.cast(w, tf.float32) - b)))
                norm.append(tf.reduce_sum(tf.square(b)))
            return tf.stack(delta), tf.stack(norm)

        strategy = model.distribute_strategy
        if is_tf_keras() and type(strategy).__name__ != "_DefaultDistributionStrategy":
            # tf_keras' distributed variables cannot be differentiated in the cross-replica
            # context: run the probe on every replica (same batch) and keep the first result.
            def distributed(x: Any, y: Any, sw: Any) -> tuple[Any, Any]:
                out = strategy.run(probe_fn, args=(x, y, sw))
                return tf.nest.map_structure(
                    lambda t: strategy.experimental_local_results(t)[0], out
                )

            self._probe_fn = tf.function(distributed)
        else:
            self._probe_fn = tf.function(probe_fn)
        self._copy_fn = tf.function(copy_fn)
        self._ratio_fn = tf.function(ratio_fn)

    # -- hooks -----------------------------------------------------------------
    # Only batch-*begin* hooks: Keras 3 runs callbacks that override
    # on_train_batch_end synchronously and converts the step's logs to Python
    # numbers (a device sync) on every step; a batch-begin hook costs nothing.

    def on_train_begin(self, logs: dict | None = None) -> None:
        x, y, sw = _probe.as_probe(self.probe, "probe", need_targets=True)
        self._x = tf.nest.map_structure(tf.convert_to_tensor, x)
        self._y = tf.nest.map_structure(tf.convert_to_tensor, y)
        self._sw = None if sw is None else tf.nest.map_structure(tf.convert_to_tensor, sw)
        self._groups = _probe.layer_groups(self.model)
        self._build_functions()
        self.records = []
        self._base = 0
        self._epoch = 0
        self._last_probe: int | None = None
        self._pending: dict[str, Any] | None = None
        self._before: list[Any] | None = None
        self._last_logs: dict[str, float] = {}
        self._writer = None
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "train"))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        # One read per epoch: the step count survives initial_epoch and earlier fits.
        self._base = int(read_value(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        step = self._base + batch
        if self._pending is not None:
            self._finish()
        due = self._last_probe is None or step - self._last_probe >= self.every_n_steps
        if not due:
            return
        self._last_probe = step
        record = self.measure()
        record["step"] = step
        record["epoch"] = self._epoch
        self._pending = record
        self._before = self._copy_fn()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._pending is not None:
            self._finish()
        if logs is not None:
            logs.update(self._last_logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._pending is not None:
            self._finish()
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None

    def _finish(self) -> None:
        """Complete the pending record with the update ratio of the step(s) since the probe."""
        record, self._pending = self._pending, None
        assert record is not None
        assert self._before is not None
        delta, norm = (read_value(t) for t in self._ratio_fn(self._before))
        self._before = None
        ratios = {
            name: _ratio(float(delta[ids].sum()), float(norm[ids].sum()))
            for name, ids in self._groups
        }
        record["update_ratios"] = ratios
        record["update_ratio"] = max(ratios.values()) if ratios else 0.0
        self._flag(record)
        self.records.append(record)
        self._last_logs = {
            "grad_norm": record["grad_norm"],
            "update_ratio": record["update_ratio"],
            "grad_vanishing": float(bool(record["vanishing_layers"])),
            "grad_exploding": float(record["exploding"]),
        }
        self._write(record)

    # -- measurement -------------------------------------------------------------

    def measure(self) -> dict[str, Any]:
        """Gradient norms on the probe batch at the current weights (no side effects).

        Returns:
            Dict with ``loss``, ``grad_norm`` (global) and ``layer_norms``
            (layer name -> norm of the concatenated gradients of its variables).
        """
        loss, squares = self._probe_fn(self._x, self._y, self._sw)
        squares = read_value(squares).astype(np.float64)
        layer_norms = {name: math.sqrt(float(squares[ids].sum())) for name, ids in self._groups}
        return {
            "loss": float(read_value(loss)),
            "grad_norm": math.sqrt(float(squares.sum())),
            "layer_norms": layer_norms,
        }

    def _flag(self, record: dict[str, Any]) -> None:
        norms = record["layer_norms"]
        top = max(norms.values()) if norms else 0.0
        vanishing = [
            name
            for name, n in norms.items()
            if math.isfinite(top) and top > 0 and n < self.vanishing_threshold * top
        ]
        too_big = [n for n, r in record["update_ratios"].items() if r > self.max_update_ratio]
        g = record["grad_norm"]
        exploding = (not math.isfinite(g)) or g > self.exploding_threshold or bool(too_big)
        record["vanishing_layers"] = vanishing
        record["exploding"] = exploding
        record["large_update_layers"] = too_big
        if vanishing:
            logger.warning(
                "GradientMonitor: vanishing gradients at step %d in %s (norm < %.0e x the "
                "largest layer norm %.3g).",
                record["step"],
                ", ".join(vanishing),
                self.vanishing_threshold,
                top,
            )
        if exploding:
            logger.warning(
                "GradientMonitor: exploding gradients at step %d: global norm %.3g "
                "(threshold %.3g), update/weight ratio > %.3g in %s.",
                record["step"],
                g,
                self.exploding_threshold,
                self.max_update_ratio,
                ", ".join(too_big) or "no layer",
            )
        if self.verbose:
            logger.info(
                "GradientMonitor step %d: grad norm %.4g, max update/weight %.3g",
                record["step"],
                g,
                record["update_ratio"],
            )

    def _write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=record["step"]):
            tf.summary.scalar("gradients/global_norm", record["grad_norm"])
            for name, value in record["layer_norms"].items():
                tf.summary.scalar(f"gradients/{name}/norm", value)
                tf.summary.scalar(f"gradients/{name}/update_ratio", record["update_ratios"][name])


def _ratio(delta_sq: float, norm_sq: float) -> float:
    if norm_sq <= 0.0:
        return 0.0 if delta_sq == 0.0 else math.inf
    return math.sqrt(delta_sq / norm_sq)
