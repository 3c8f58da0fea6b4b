"""`NaNGuard`: skip or undo a non-finite step in the graph, cut the LR and carry on."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt import _validation as v
from keras_opt._state import base_optimizer
from keras_opt.backend import keras
from keras_opt.callbacks._base import Callback
from keras_opt.callbacks._guard_step import CAUSES, GuardedStep
from keras_opt.callbacks._nan_diagnosis import diagnose
from keras_opt.callbacks._optimizer_state import build_optimizer

logger = logging.getLogger(__name__)

__all__ = ["NaNGuard"]


class NaNGuard(Callback):
    """Goes past ``TerminateOnNaN``: a non-finite step never reaches the weights.

    Everything runs inside the train step, on the device; a good step reads
    nothing back to the host. For the duration of ``fit`` the guard wraps the
    model's ``train_step`` (restored at ``on_train_end``):

    * **Non-finite loss or gradient:** the step is undone inside the train
      step. The update runs as Keras wrote it, and at the end of the step
      the snapshot is put back when the loss or any gradient was non-finite,
      so a non-finite step never outlives the train step that computed it:
      the end state is that of a skipped update followed by the rollback
      below. (Keras' ``LossScaleOptimizer`` puts a ``tf.cond`` around
      the update instead, which holds every variable's update back until the
      last gradient is tested; measured on a 2-core CPU, that costs more.)
      Under ``tf.distribute`` the decision is made in cross-replica context,
      so every replica agrees.
    * **Weights poisoned by an update:** the next step's loss is non-finite
      (an overflowing update leaves inf/NaN or huge weights), and the state
      is rolled back from one on-device snapshot. With ``check_weights`` the
      whole state (weights, BatchNorm statistics, optimizer slots) is also
      tested before each snapshot refresh, so a non-finite value that the
      loss does not show (an inf Adam slot, a NaN moving variance) is never
      kept and counts as a fault.

    The snapshot (``tf.Variable`` copies of the weights, the optimizer state and a
    float LR, one copy only) is refreshed when a step computes a finite loss:
    that loss proves the state the step started from good. A fault therefore
    restores the state from before the step that caused it: the overflowing
    update itself, or -- for a non-finite loss -- the previous step, whose
    update left finite but poisoned weights. Then the LR is multiplied by
    ``factor``: a float LR variable directly; a Keras ``LearningRateSchedule``
    in the optimizer, or the schedule that `LRScheduler` installs, is *scaled*
    (the guard's scale multiplies it in-graph for the rest of the ``fit``; the
    LR that `LRScheduler` logs does not include it, ``rescues`` does). Keras'
    running metrics are reset at a fault (they would stay NaN), so that epoch's
    logged metrics cover the batches after it. An undone step does not advance
    ``optimizer.iterations`` (it is restored with the rest of the state).

    After ``max_retries`` rescues, the next fault also restores the last good
    state, every later update is skipped, and training stops. The guard then
    says what it found: the first layer whose output (forward order) or
    weight gradient (nearest the loss) is non-finite on the offending batch at
    the last good weights, or that both are finite and the optimizer update
    itself overflowed. The batch is saved as ``nan_batch.npz`` (keys ``x0,
    x1, ..., y0, ..., sw0, ...`` for the flattened inputs, targets and sample
    weights) in ``save_dir``; the findings are in ``self.report``. The batch
    reaches the host through ``tf.py_function``, which runs only on a fault.
    ``run_eagerly=True`` works the same.
    Under ``MirroredStrategy`` the replicas' shards are put back together.

    **XLA (``jit_compile=True``, which Keras 3 picks by default on a GPU):** the
    skip, the rollback and the LR cut work the same, but ``tf.py_function``
    cannot run under XLA, so the guard cannot save the batch or diagnose it,
    and it learns of faults only at the end of each epoch: ``rescues`` and
    the log lines come then, and after ``max_retries`` training stops at the
    end of the epoch (its remaining steps are skipped in-graph, so the
    weights stay at the last good state). It says so in a warning.

    Cost: per step, one sum per gradient (the finiteness test), a few scalar
    ops and one conditional, which takes no variable: on a fault, its branch
    undoes the step on the host, through ``tf.py_function``, reaching the
    variables directly (each variable among a conditional node's inputs
    costs every step, taken or not). The host picks the snapshot steps: every
    ``backup_every``-th step runs a second traced train function that also
    copies the state into the snapshot (packed in one variable per dtype).
    Under XLA, with ``steps_per_execution > 1``, or when a later callback
    re-traces the train function, the graph decides instead (one conditional
    over the state: slower, same guarantees). On a 2-core CPU VM,
    ``benchmarks/callback_overhead.py`` measures the digits CNN's step with
    and without the guard on one model (see ``benchmarks/RESULTS.md``): a
    fixed cost per step, not per parameter, of the order of 1-2% of its
    3 ms ``fit`` step, less on bigger steps. Memory: one copy of the weights
    and optimizer state on the device (and, on snapshot steps, the packed read).

    Args:
        factor: Float in (0, 1). LR multiplier at each rescue.
        max_retries: Integer >= 0. Rescues before giving up.
        check_weights: Boolean. Also test the whole state (weights, BatchNorm
            statistics, optimizer slots) before each snapshot refresh; a
            non-finite value is a fault (cause ``"weights"``) and is rolled back.
        backup_every: Integer >= 1. The snapshot is refreshed on every
            ``backup_every``-th step (when that step's loss and gradients are
            finite), so a fault goes back at most that many steps (1: exactly
            to the state before the step that caused it). Each refresh is one
            device-side copy of the state: on a small model with fast steps,
            refreshing every step costs a few percent of ``fit``; every 100
            steps costs nothing measurable. The snapshot never leaves the device.
        save_dir: Optional path for ``nan_batch.npz``; a new temporary
            directory when None.

    Returns:
        A Keras callback of the flavor in use. After ``fit``: ``rescues`` (one
        dict per rescue: ``epoch``, ``batch``, ``cause`` -- ``"loss"`` for a
        non-finite loss or gradient, ``"weights"`` for an update that made the
        state non-finite --, ``lr`` and ``new_lr``) and ``report`` (None, or a
        dict with ``where``, ``layer``, ``batch_file`` and ``message`` once the
        guard gave up).

    Raises:
        TypeError: at train begin, if the optimizer's LR is neither a variable
            nor a ``LearningRateSchedule``.

    Example:
        >>> from keras_opt.backend import keras
        >>> from keras_opt.callbacks import NaNGuard
        >>> import numpy as np
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        >>> x = np.ones((8, 3), "float32"); x[4] = np.nan  # one bad sample
        >>> guard = NaNGuard(factor=0.5)
        >>> _ = model.fit(x, np.ones((8, 1)), batch_size=4, shuffle=False, callbacks=[guard],
        ...               verbose=0)
        >>> [(r["batch"], r["cause"]) for r in guard.rescues]
        [(1, 'loss')]
        >>> bool(np.isfinite(model.get_weights()[0]).all())
        True
    """

    def __init__(
        self,
        factor: float = 0.1,
        max_retries: int = 3,
        check_weights: bool = True,
        backup_every: int = 100,
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
        self._graph: GuardedStep | None = None
        self._reset()

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

    def _reset(self) -> None:
        self._seen = 0  # faults already turned into events
        self._final: dict[str, Any] | None = None  # the fault that made the guard give up
        self._shards: list[list[np.ndarray]] = []
        self._epoch = 0
        self._epoch_start = 0
        self._pending_arm = False

    def __deepcopy__(self, memo: dict) -> NaNGuard:
        # KerasTuner deep-copies callbacks per trial: copy the configuration only.
        return type(self)(**self.get_config())

    # -- setup -----------------------------------------------------------------------
    def _jit(self) -> bool:
        jit = getattr(self.model, "jit_compile", None)
        if jit is None:
            jit = getattr(self.model, "_jit_compile", False)
        return bool(jit)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.rescues, self.report = [], None
        self._reset()
        optimizer = base_optimizer(self.model.optimizer)
        lr = getattr(optimizer, "_learning_rate", None)
        if not isinstance(lr, keras.optimizers.schedules.LearningRateSchedule) and not hasattr(
            lr, "assign"
        ):
            raise TypeError(
                f"NaNGuard cuts the learning rate, but optimizer {type(optimizer).__name__} holds "
                f"a {type(lr).__name__}. Create the optimizer with a float `learning_rate` or a "
                "keras.optimizers.schedules.LearningRateSchedule."
            )
        if not self.model.built:
            logger.warning(
                "NaNGuard: the model is not built yet (its variables do not exist), so the guard "
                "starts at the end of the first epoch. Build the model first (e.g. give it an "
                "`Input`) to guard every step."
            )
            self._pending_arm = True
            return
        self._arm()

    def _arm(self) -> None:
        build_optimizer(self.model)
        jit = self._jit()
        if jit:
            logger.warning(
                "NaNGuard: the model is XLA-compiled (jit_compile=True). Non-finite steps are "
                "still skipped or rolled back and the LR cut, in the graph, but tf.py_function "
                "does not run under XLA: the offending batch cannot be saved or diagnosed, and "
                "rescues are logged, and training stops after max_retries, at the end of the "
                "epoch. Compile with `jit_compile=False` for both."
            )
        self._graph = GuardedStep(
            self.model,
            self.factor,
            self.max_retries,
            self.check_weights,
            self.backup_every,
            None if jit else self._capture,
        )
        self._install()

    def _install(self) -> None:
        assert self._graph is not None
        self._graph.install()
        self._graph.make_train_function()

    def _uninstall(self) -> None:
        if self._graph is not None:
            self._graph.uninstall()
            self.model.train_function = None

    # -- host side: called from the graph (tf.py_function) on a fault only ----------------
    def _capture(self, row: np.ndarray, parts: list[list[Any]]) -> Any:
        index = int(row[0])
        self._shards = [[a.numpy() for a in part] for part in parts]
        if index >= self._seen:
            self._event(index, row[1:])
        return np.bool_(True)

    def _event(self, index: int, row: Any) -> None:
        step, cause, before, after = (float(x) for x in row)
        self._seen = max(self._seen, index + 1)
        event: dict[str, Any] = {
            "epoch": self._epoch,
            "batch": int(step) - 1 - self._epoch_start,
            "cause": CAUSES.get(int(cause), "loss"),
            "lr": before,
        }
        if index >= self.max_retries:
            self._final = event
            self.model.stop_training = True
            return
        event["new_lr"] = after
        self.rescues.append(event)
        logger.warning(
            "NaNGuard: non-finite %s at epoch %d, batch %d; undid the step, restored the last "
            "good weights and optimizer state and cut the LR %.3g -> %.3g (rescue %d of %d).",
            "loss or gradient" if event["cause"] == "loss" else "weights or optimizer state",
            event["epoch"],
            event["batch"],
            before,
            after,
            len(self.rescues),
            self.max_retries,
        )

    def _sync(self) -> None:
        """Pick up faults the graph recorded but could not announce (XLA): one read."""
        graph = self._graph
        if graph is None:
            return
        faults = int(graph.faults.numpy())
        if faults > self._seen:
            table = np.asarray(graph.events.numpy())
            for index in range(self._seen, min(faults, self.max_retries + 1)):
                self._event(index, table[index])
        if self._final is not None and self.report is None:
            self.model.stop_training = True
            self.report = self._give_up(self._final)
            logger.error("NaNGuard: %s", self.report["message"])

    # -- hooks (none per batch) -------------------------------------------------------------
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        if self._graph is not None:
            self._epoch_start = self._graph.steps

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._sync()
        if self._pending_arm and self.model.built:
            self._pending_arm = False
            self._arm()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._sync()
        self._uninstall()
        self._graph = None

    # -- giving up --------------------------------------------------------------------------
    def _batch(self) -> tuple[Any, Any, Any] | None:
        graph = self._graph
        if not self._shards or graph is None or graph.layout is None:
            return None
        if len(self._shards) == 1:
            arrays = self._shards[0]
        else:  # MirroredStrategy: put the replicas' shards back together, in order
            arrays = [np.concatenate(leaf, axis=0) for leaf in zip(*self._shards, strict=True)]
        template, flat = graph.layout
        return _unflatten(arrays, flat, template)

    def _give_up(self, event: dict[str, Any]) -> dict[str, Any]:
        report: dict[str, Any] = {**event, "rescues": len(self.rescues), "batch_file": None}
        found: dict[str, Any] = {"where": None, "layer": None, "message": "batch not captured"}
        if self._graph is not None and self._graph.capture is None:
            found["message"] = "batch not captured (the model is XLA-compiled)"
        batch = self._batch()
        if batch is not None:
            x, y, sw = batch
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


def _unflatten(arrays: list[np.ndarray], flat: list[bool], template: Any) -> tuple[Any, ...]:
    it = iter(arrays)
    leaves = [next(it) if present else None for present in flat]
    data = tf.nest.pack_sequence_as(template, leaves)
    return keras.utils.unpack_x_y_sample_weight(data)
