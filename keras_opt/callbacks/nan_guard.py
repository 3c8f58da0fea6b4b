"""`NaNGuard`: roll back a non-finite step, cut the LR and carry on."""

from __future__ import annotations

import logging
import math
import os
import tempfile
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt import _validation as v
from keras_opt.callbacks._base import Callback
from keras_opt.callbacks._nan_diagnosis import diagnose
from keras_opt.callbacks._optimizer_state import (
    build_optimizer,
    learning_rate_variable,
    read_float,
)
from keras_opt.callbacks.lr_finder import restore, snapshot

logger = logging.getLogger(__name__)


class NaNGuard(Callback):
    """Goes past ``TerminateOnNaN``: restore the last good state, cut the LR, continue.

    After every good step (finite loss and, with ``check_weights``, finite
    weights, trainable and non-trainable such as BatchNorm statistics) the
    guard keeps a host copy of the weights, the optimizer state (slots,
    iteration count) and the LR (every ``backup_every`` steps; each copy costs
    one device-to-host transfer of the model and its optimizer state; the two
    most recent copies are kept). On a fault it puts a copy back, bit for bit,
    multiplies the LR by ``factor`` and lets ``fit`` go on:

    * non-finite **weights** after a step: the copy from just before that step;
    * non-finite **loss**: the copy from one backup earlier, because the loss
      is computed *before* the step's update, with weights that the previous
      step (whose own loss was still finite) already poisoned. That step is the
      only work given up.

    Keras' running epoch metrics are reset at a rescue (they would stay NaN),
    so that epoch's logged metrics cover the batches after the rescue. The LR
    must be a float (variable), not a schedule object.

    After ``max_retries`` rescues, the next fault restores the last good state
    and stops training, and the guard says what it found: the first layer
    whose output (forward order) or weight gradient (nearest the loss) is
    non-finite on the offending batch at the last good weights, or that both
    are finite and the optimizer update itself overflowed. The offending batch
    is saved as ``nan_batch.npz`` (keys ``x0, x1, ..., y0, ..., sw0, ...`` for
    the flattened inputs, targets and sample weights) in ``save_dir``; the
    findings are in ``self.report``.

    **How the offending batch is captured.** Callbacks never see the data of a
    step, so at ``on_train_begin`` the guard wraps the model's ``train_step``
    (restored at ``on_train_end``): after the original step, a ``tf.cond``
    checks the loss (and the weights) and, only when one is non-finite, copies
    that batch to the host with ``tf.py_function``. Normal steps pay one
    finiteness check and never transfer data. ``tf.py_function`` cannot run
    inside XLA, so when the model is compiled with ``jit_compile=True`` the
    guard still rolls back and cuts the LR but cannot save the batch (it says
    so). Under ``MirroredStrategy`` each replica checks its own shard, and the
    shard that went bad is saved.

    Args:
        factor: Float in (0, 1). LR multiplier at each rescue.
        max_retries: Integer >= 0. Rescues before giving up.
        check_weights: Boolean. Also treat non-finite weights as a fault
            (checked in the train step; one extra pass over the weights).
        backup_every: Integer >= 1. Steps between backups of the good state.
        save_dir: Optional path for ``nan_batch.npz``; a new temporary
            directory when None.

    Returns:
        A Keras callback of the flavor in use.

    Example:
        >>> from keras_opt.callbacks import NaNGuard
        >>> guard = NaNGuard(factor=0.1, max_retries=3)
        >>> # model.fit(x, y, callbacks=[guard]); guard.rescues, guard.report
    """

    def __init__(
        self,
        factor: float = 0.1,
        max_retries: int = 3,
        check_weights: bool = True,
        backup_every: int = 1,
        save_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        v.in_range("factor", factor, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        v.integer("max_retries", max_retries, minimum=0)
        if not isinstance(check_weights, bool):
            v.fail("check_weights", "a bool", check_weights, exc=TypeError)
        v.integer("backup_every", backup_every, minimum=1)
        if save_dir is not None and not isinstance(save_dir, (str, os.PathLike)):
            v.fail("save_dir", "a path or None", save_dir, exc=TypeError)
        self.factor = float(factor)
        self.max_retries = int(max_retries)
        self.check_weights = check_weights
        self.backup_every = int(backup_every)
        self.save_dir = None if save_dir is None else os.fspath(save_dir)
        self.rescues: list[dict[str, Any]] = []
        self.report: dict[str, Any] | None = None
        self._captured: tuple[list[np.ndarray], list[bool], Any] | None = None

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments.

        Returns:
            Dict.
        """
        return {
            "factor": self.factor,
            "max_retries": self.max_retries,
            "check_weights": self.check_weights,
            "backup_every": self.backup_every,
            "save_dir": self.save_dir,
        }

    # -- capture of the offending batch -----------------------------------------

    def _store(self, template: Any, flat: list[bool], *tensors: Any) -> Any:
        self._fault_seen = True
        if self._captured is None:
            self._captured = [t.numpy() for t in tensors], flat, template
        return np.bool_(True)

    def _install_capture(self) -> None:
        model = self.model
        jit = getattr(model, "jit_compile", None)
        if jit is None:
            jit = getattr(model, "_jit_compile", False)
        self._can_capture = not bool(jit)
        if not self._can_capture:
            logger.warning(
                "NaNGuard: the model is XLA-compiled (jit_compile=True), so the offending batch "
                "cannot be captured (tf.py_function does not run under XLA). Rollback and LR cuts "
                "still work. Compile with `jit_compile=False` to capture the batch."
            )
            return
        original = model.train_step
        guard = self

        def train_step(data: Any) -> Any:
            logs = original(data)
            bad = tf.constant(False)
            if isinstance(logs, dict) and "loss" in logs:
                loss = tf.cast(tf.convert_to_tensor(logs["loss"]), tf.float32)
                bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(loss)))
            if guard.check_weights:
                finite = [tf.reduce_all(tf.math.is_finite(w)) for w in model.weights]
                bad = tf.logical_or(bad, tf.logical_not(tf.reduce_all(tf.stack(finite))))
            leaves = tf.nest.flatten(data)
            tensors = [t for t in leaves if t is not None]
            flat = [t is not None for t in leaves]
            template = tf.nest.pack_sequence_as(data, list(range(len(leaves))))

            def capture() -> Any:
                return tf.py_function(
                    lambda *ts: guard._store(template, flat, *ts), tensors, Tout=tf.bool
                )

            tf.cond(bad, capture, lambda: tf.constant(False))
            return logs

        model.train_step = train_step
        model.make_train_function(force=True)

    def _remove_capture(self) -> None:
        model = self.model
        if "train_step" in model.__dict__:
            del model.__dict__["train_step"]
            model.train_function = None

    # -- hooks ---------------------------------------------------------------------

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._lr = learning_rate_variable(self.model.optimizer, "NaNGuard")
        self.rescues = []
        self.report = None
        self._captured = None
        self._fault_seen = False
        self._since_backup = 0
        self._epoch = 0
        self._weights_fn = tf.function(
            lambda: tf.reduce_all(
                tf.stack([tf.reduce_all(tf.math.is_finite(w)) for w in self.model.weights])
            )
        )
        self._install_capture()
        self._good = self._older = None
        if self.model.built:
            build_optimizer(self.model)
            self._good = self._older = snapshot(self.model)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def _fault(self, logs: dict | None) -> str | None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(read_float(loss)):
            return "loss"
        if self._fault_seen:
            return "weights"
        if self.check_weights and not self._can_capture and not bool(self._weights_fn()):
            return "weights"
        return None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        kind = self._fault(logs)
        if kind is None:
            self._since_backup += 1
            if self._since_backup >= self.backup_every or self._good is None:
                self._older, self._good = self._good, snapshot(self.model)
                self._since_backup = 0
            return
        # A non-finite loss is computed *before* the step's update, with weights that the
        # previous (finite-looking) step already poisoned: go back one backup further.
        state = self._older if kind == "loss" else self._good
        if state is None:
            self.model.stop_training = True
            self.report = {
                "epoch": self._epoch,
                "batch": int(batch),
                "cause": kind,
                "message": "non-finite values before any good state was saved; training stopped",
            }
            logger.error("NaNGuard: %s", self.report["message"])
            return
        restore(self.model, state)
        self._older = self._good = state
        self._since_backup = 0
        event: dict[str, Any] = {
            "epoch": self._epoch,
            "batch": int(batch),
            "cause": kind,
            "lr": read_float(self._lr),
        }
        if len(self.rescues) < self.max_retries:
            new_lr = event["lr"] * self.factor
            self._lr.assign(new_lr)
            self._good["lr"] = np.array(new_lr, dtype=self._good["lr"].dtype)
            event["new_lr"] = new_lr
            self.rescues.append(event)
            self._fault_seen = False
            self._captured = None
            logger.warning(
                "NaNGuard: non-finite loss or weights at epoch %d, batch %d; restored the last "
                "good weights and optimizer state and cut the LR %.3g -> %.3g (rescue %d of %d).",
                event["epoch"],
                event["batch"],
                event["lr"],
                new_lr,
                len(self.rescues),
                self.max_retries,
            )
            return
        self.model.stop_training = True
        self.report = self._give_up(event)
        logger.error("NaNGuard: %s", self.report["message"])

    def _give_up(self, event: dict[str, Any]) -> dict[str, Any]:
        report: dict[str, Any] = {**event, "rescues": len(self.rescues), "batch_file": None}
        found: dict[str, Any] = {"where": None, "layer": None, "message": "batch not captured"}
        if self._captured is not None:
            x, y, sw = _unflatten(*self._captured)
            directory = self.save_dir or tempfile.mkdtemp(prefix="keras_opt_nan_guard_")
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, "nan_batch.npz")
            payload = {}
            for key, part in (("x", x), ("y", y), ("sw", sw)):
                for i, arr in enumerate(tf.nest.flatten(part) if part is not None else []):
                    payload[f"{key}{i}"] = arr
            np.savez(path, **payload)
            report["batch_file"] = path
            try:
                found = diagnose(self.model, x, y, sw)
            except (ValueError, RuntimeError) as err:  # e.g. tf_keras under a strategy
                found = {
                    "where": None,
                    "layer": None,
                    "message": f"the layer-by-layer diagnosis could not run ({err})",
                }
        report.update({k: found[k] for k in ("where", "layer")})
        where = f" Offending batch saved to {report['batch_file']}." if report["batch_file"] else ""
        report["message"] = (
            f"training stopped after {len(self.rescues)} rescues: a non-finite loss or weight "
            f"again at epoch {event['epoch']}, batch {event['batch']} (LR {event['lr']:.3g}). "
            f"On that batch at the last good weights: {found['message']}.{where} The last good "
            "weights and optimizer state are restored."
        )
        return report

    def on_train_end(self, logs: dict | None = None) -> None:
        self._remove_capture()
        self._weights_fn = None


def _unflatten(arrays: list[np.ndarray], flat: list[bool], template: Any) -> tuple[Any, ...]:
    it = iter(arrays)
    leaves = [next(it) if present else None for present in flat]
    data = tf.nest.pack_sequence_as(template, leaves)
    if not isinstance(data, tuple):
        return data, None, None
    data = tuple(data) + (None,) * (3 - len(data))
    return data[0], data[1], data[2]
