"""What `NaNGuard` adds to the train step: all of it runs in the graph, on the device.

`GuardedStep` owns a few variables (one snapshot of the model and optimizer
state, a step counter, a fault counter, an event table, an LR scale) and
wraps a model's ``train_step``:

1. While the step is traced, the optimizer's update (``apply`` in Keras 3,
   ``apply_gradients`` in tf_keras) is replaced by a guarded one, as Keras'
   ``LossScaleOptimizer`` does it: the loss (captured from ``scale_loss`` /
   ``minimize``) and every gradient are tested for finiteness; only when all
   are finite is the state, which that finite loss has just proven good,
   copied into the snapshot and the update applied (with ``check_weights``,
   only after the whole state is found finite). Otherwise the update is
   skipped, and in the same conditional the snapshot is put back, the LR is
   cut (or, after ``max_retries``, every later update is skipped), the event
   is written into the event table and -- outside XLA only -- the batch is
   handed to the host with ``tf.py_function``. Under a ``tf.distribute``
   strategy the test and the conditional run in cross-replica context
   (``merge_call``), so every replica takes the same branch.
2. After the step, Keras' running metrics are reset if the step was a fault
   (they would stay NaN for the epoch).

Nothing is read back to the host on a good step. What a good step pays is
mostly the conditional's inputs: every variable a branch touches is an
input of the conditional node, passed on every step (about 3 us each on a
2-core CPU VM), so the rare branches (restore, record) share the
conditional that the update needs anyway, and the metric reset, which must
come after Keras' metric update, has a conditional of its own that touches
the metric variables only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt._state import base_optimizer, unique
from keras_opt.backend import is_tf_keras, keras

try:  # one-node conditionals (see `_cond`); tf.cond where TensorFlow lacks it
    from tensorflow.python.ops.cond_v2 import indexed_case as _indexed_case
except ImportError:  # pragma: no cover
    _indexed_case = None

CAUSE_LOSS = 1  # non-finite loss or gradient: the update was skipped
CAUSE_WEIGHTS = 2  # non-finite weights or optimizer state found before a snapshot
CAUSES = {CAUSE_LOSS: "loss", CAUSE_WEIGHTS: "weights"}
_ONLY_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA


def all_finite(tensors: list[Any]) -> tf.Tensor:
    """True when the float elements of ``tensors`` are all finite: one sum per tensor.

    A sum is finite only if every element is. A tensor whose sum overflows
    float32 (values near 1e38) also counts as non-finite: that is a blow-up too.
    """
    sums = []
    for t in tensors:
        if t is None:
            continue
        if isinstance(t, tf.IndexedSlices):
            t = t.values
        t = tf.convert_to_tensor(t)
        if not t.dtype.is_floating:
            continue
        total = tf.reduce_sum(t) if t.shape.rank else t
        sums.append(total if total.dtype == tf.float32 else tf.cast(total, tf.float32))
    if not sums:
        return tf.constant(True)
    return tf.math.is_finite(tf.add_n(sums) if len(sums) > 1 else sums[0])


def _variable(value: Any, dtype: Any, name: str) -> tf.Variable:
    return tf.Variable(value, dtype=dtype, trainable=False, name=name, aggregation=_ONLY_FIRST)


class _ScaledLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule(step) * scale``: swapped in only while the guarded update is traced."""

    def __init__(self, schedule: Any, scale: tf.Variable) -> None:
        super().__init__()
        self.schedule, self.scale = schedule, scale

    def __call__(self, step: Any) -> Any:
        value = self.schedule(step)
        return value * tf.cast(self.scale, tf.convert_to_tensor(value).dtype)

    def get_config(self) -> dict[str, Any]:  # never serialized: it lives inside one trace
        return {}


def _cond(
    pred: Any, true_fn: Callable[[], Any], false_fn: Callable[[], Any], *, lower: bool
) -> Any:
    """``tf.cond``; with ``lower=False`` one ``If`` node that runs only the branch taken.

    ``tf.cond`` is lowered to a ``Switch`` node per captured tensor, which a
    branch that touches every variable pays on every step even when it is not
    taken; a branch that runs rarely (the rollback) is cheaper as one node.
    """
    if lower or _indexed_case is None:
        return tf.cond(pred, true_fn, false_fn)
    return _indexed_case(
        tf.cast(pred, tf.int32), [false_fn, true_fn], lower_using_switch_merge=False
    )


class _PackedSnapshot:
    """One flat ``tf.Variable`` per dtype holding copies of many variables.

    Every variable a graph touches is an input of the graph's call, and of each
    conditional node that touches it, passed on every step (about 3 us each on
    a 2-core CPU VM) even when the branch does not run. Packed, the snapshot of
    a model's few dozen variables is one or two inputs.
    """

    def __init__(self, variables: list[Any]) -> None:
        self.groups: dict[tf.DType, list[int]] = {}
        for i, v in enumerate(variables):
            self.groups.setdefault(tf.as_dtype(v.dtype), []).append(i)
        self.shapes = [tuple(v.shape) for v in variables]
        self.flat: dict[tf.DType, tf.Variable] = {}
        values = [tf.convert_to_tensor(v) for v in variables]
        for dtype, members in self.groups.items():
            self.flat[dtype] = _variable(
                self._pack([values[i] for i in members]),
                dtype,
                f"keras_opt_nan_guard_snapshot_{dtype.name}",
            )

    @staticmethod
    def _pack(values: list[tf.Tensor]) -> tf.Tensor:
        parts = [tf.reshape(t, [-1]) for t in values]
        return parts[0] if len(parts) == 1 else tf.concat(parts, 0)

    def save(self, values: list[tf.Tensor]) -> None:
        """Copy ``values`` (one per variable, in order) into the snapshot."""
        for dtype, members in self.groups.items():
            self.flat[dtype].assign(self._pack([values[i] for i in members]))

    def restore(self, variables: list[Any]) -> None:
        """Put the snapshot back into ``variables`` (those it was made for, in order)."""
        for dtype, members in self.groups.items():
            sizes = [int(np.prod(self.shapes[i], dtype=np.int64)) for i in members]
            flat = tf.convert_to_tensor(self.flat[dtype])
            parts = [flat] if len(members) == 1 else tf.split(flat, sizes)
            for i, part in zip(members, parts, strict=True):
                variables[i].assign(tf.reshape(part, self.shapes[i]))


class GuardedStep:
    """The in-graph state and logic of one `NaNGuard` during one ``fit``.

    Snapshot timing: when step ``k`` computes a finite loss and finite
    gradients, the weights and optimizer state that step ``k`` started from are
    proven good; on every ``backup_every``-th step they are then copied, just
    before the update (the non-trainable state, such as BatchNorm statistics,
    is read at the start of the step, before the forward pass moves it). A
    fault at step ``k`` puts the copy back: it undoes a non-finite step and,
    through the loss of step ``k``, an update of step ``k - 1`` that left finite
    but poisoned weights.
    """

    def __init__(
        self,
        model: Any,
        factor: float,
        max_retries: int,
        check_weights: bool,
        backup_every: int,
        capture: Callable[..., Any] | None,
    ) -> None:
        self.model = model
        self.factor = factor
        self.max_retries = max_retries
        self.check_weights = check_weights
        self.backup_every = backup_every
        self.capture = capture  # host function for the batch of a fault; None under XLA
        self.layout: tuple[Any, list[bool]] | None = None
        # One node per rare branch on one device; lowered conds under several replicas.
        self.lower = model.distribute_strategy.num_replicas_in_sync > 1
        optimizer = base_optimizer(model.optimizer)
        self.optimizer = optimizer
        lr = optimizer._learning_rate
        self.lr_variable = None
        if not isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            self.lr_variable = lr
        skip = {id(v) for m in model.metrics for v in m.variables} | {id(lr)}
        self.trainable = [
            v
            for v in unique([*model.trainable_variables, *optimizer.variables])
            if id(v) not in skip
        ]
        self.non_trainable = [
            v for v in unique(list(model.non_trainable_variables)) if id(v) not in skip
        ]
        self.all_state = [*self.trainable, *self.non_trainable]
        with model.distribute_strategy.scope():

            def copy_of(v: Any, name: str) -> tf.Variable:
                return _variable(tf.convert_to_tensor(v), v.dtype, f"keras_opt_nan_guard_{name}")

            self.snapshot = _PackedSnapshot(self.all_state)
            if self.lr_variable is not None:
                # The LR that produced the snapshot's state, and the LR of the last update.
                self.snap_lr = copy_of(self.lr_variable, "snapshot_lr")
                self.last_lr = copy_of(self.lr_variable, "last_lr")
            self.step = _variable(0, tf.int64, "keras_opt_nan_guard_step")
            self.faults = _variable(0, tf.int64, "keras_opt_nan_guard_faults")
            # 0, or NaN once the guard gave up: added to the finiteness sum, it skips every update.
            self.poison = _variable(0.0, tf.float32, "keras_opt_nan_guard_poison")
            self.scale = _variable(1.0, tf.float32, "keras_opt_nan_guard_lr_scale")
            # One row per fault until giving up: step, cause, LR before, LR after.
            self.events = _variable(
                tf.zeros((max_retries + 1, 4), tf.float64), tf.float64, "keras_opt_nan_guard_events"
            )

    @property
    def gave_up(self) -> bool:
        """Eagerly: True once the guard gave up."""
        return int(self.faults.numpy()) > self.max_retries

    # -- pieces used inside the traced step (cross-replica context) --------------------
    def _before(self, distribution: Any) -> list[tf.Tensor]:
        # Reads, not copies: the forward pass is about to move these (BatchNorm statistics).
        return [tf.convert_to_tensor(v) for v in self.non_trainable]

    def _copy(self, before: list[tf.Tensor]) -> None:
        self.snapshot.save([*(tf.convert_to_tensor(v) for v in self.trainable), *before])
        if self.lr_variable is not None:
            self.snap_lr.assign(tf.convert_to_tensor(self.last_lr))

    def _restore(self) -> None:
        self.snapshot.restore(self.all_state)
        if self.lr_variable is not None:
            self.lr_variable.assign(tf.convert_to_tensor(self.snap_lr))
            self.last_lr.assign(tf.convert_to_tensor(self.snap_lr))

    def _current_lr(self) -> tf.Tensor:
        if self.lr_variable is not None:
            return tf.cast(tf.convert_to_tensor(self.lr_variable), tf.float64)
        schedule = self.optimizer._learning_rate
        value = tf.cast(schedule(self.optimizer.iterations), tf.float64)
        return value * tf.cast(self.scale, tf.float64)

    def _cut_lr(self) -> tf.Tensor:
        if self.lr_variable is not None:
            # The restored state with the cut LR is the new good point.
            new = tf.convert_to_tensor(self.lr_variable) * self.factor
            for var in (self.lr_variable, self.last_lr, self.snap_lr):
                var.assign(new)
        else:
            self.scale.assign(self.scale * self.factor)
        return tf.constant(True)

    def _give_up(self) -> tf.Tensor:
        self.poison.assign(float("nan"))
        return tf.constant(True)

    @staticmethod
    def _agree(distribution: Any, value: Any, how: Callable = tf.reduce_all) -> tf.Tensor:
        values = distribution.experimental_local_results(value)
        return values[0] if len(values) == 1 else how(tf.stack(values))

    # -- the guarded optimizer update ----------------------------------------------------
    def _guarded_apply(self, apply: Callable[..., Any], trace: dict[str, Any]) -> Callable:
        def guarded(grads: list[Any], *args: Any, **kwargs: Any) -> Any:
            extra = [tf.convert_to_tensor(self.poison)]
            if trace.get("loss") is not None:
                extra.append(tf.reduce_sum(tf.cast(trace["loss"], tf.float32)))
            local_ok = all_finite([*extra, *grads])

            def cross(distribution: Any, local_ok: Any, grads: Any, *leaves: Any) -> tf.Tensor:
                ok = self._agree(distribution, local_ok)
                before = trace["before"]

                def fault(cause: int) -> Callable[[], tf.Tensor]:
                    def handle() -> tf.Tensor:
                        self._fault(distribution, tf.constant(cause), leaves)
                        return tf.constant(cause)

                    return handle

                def apply_now() -> tf.Tensor:
                    if self.lr_variable is not None:
                        self.last_lr.assign(tf.convert_to_tensor(self.lr_variable))
                    original = self.optimizer._learning_rate
                    if self.lr_variable is None:
                        self.optimizer._learning_rate = _ScaledLearningRate(original, self.scale)
                    try:
                        distribution.extended.call_for_each_replica(
                            apply, args=(grads, *args), kwargs=kwargs
                        )
                    finally:
                        self.optimizer._learning_rate = original
                    return tf.constant(0)

                def copy_then_apply() -> tf.Tensor:
                    # The loss just computed is finite: the state it came from is good.
                    def good() -> tf.Tensor:
                        self._copy(before)
                        return apply_now()

                    if not self.check_weights:
                        return good()
                    # Never keep a non-finite state (e.g. an inf optimizer slot): a fault.
                    state_ok = all_finite([*self.all_state, *before])
                    return _cond(state_ok, good, fault(CAUSE_WEIGHTS), lower=self.lower)

                if self.backup_every == 1:
                    branch = tf.where(ok, 2, 0)
                else:
                    due = tf.equal(tf.math.floormod(self.step, self.backup_every), 0)
                    branch = tf.where(ok, tf.where(due, 2, 1), 0)
                branches = [fault(CAUSE_LOSS), apply_now, copy_then_apply]
                if self.lower or _indexed_case is None:
                    return tf.switch_case(branch, branches)
                return _indexed_case(branch, branches, lower_using_switch_merge=False)

            status = tf.distribute.get_replica_context().merge_call(
                cross, args=(local_ok, grads, *trace["leaves"])
            )
            previous = trace["status"]
            trace["status"] = status if previous is None else tf.maximum(previous, status)
            return self.optimizer.iterations

        return guarded

    # -- a fault: in the guarded update, or after the step when the update never saw it ----
    def _fault(self, distribution: Any, status: Any, leaves: Any) -> tf.Tensor:
        """Put the snapshot back; cut the LR (or give up); record the event; hand the batch over.

        Runs inside the conditional of the guarded update, so that a good step passes the
        model's state to one conditional only; after the step only for a loss that the
        guarded update never saw (``_after``'s ``late``).
        """
        self._restore()
        step = tf.convert_to_tensor(self.step) + 1  # this step, 1-based (counted after it)

        def record() -> tf.Tensor:
            index = tf.convert_to_tensor(self.faults)
            before = self._current_lr()
            _cond(tf.less(index, self.max_retries), self._cut_lr, self._give_up, lower=True)
            after = self._current_lr()
            row = tf.stack([tf.cast(step, tf.float64), tf.cast(status, tf.float64), before, after])
            self.events.assign(
                tf.tensor_scatter_nd_update(
                    tf.convert_to_tensor(self.events),
                    tf.reshape(index, (1, 1)),
                    tf.reshape(row, (1, 4)),
                )
            )
            self.faults.assign_add(1)
            if self.capture is not None:
                full = tf.concat([tf.reshape(tf.cast(index, tf.float64), (1,)), row], 0)
                self._hand_over(distribution, full, leaves)
            return tf.constant(True)

        # After giving up every step is undone, and nothing more is recorded.
        return _cond(
            tf.less_equal(self.faults, self.max_retries),
            record,
            lambda: tf.constant(False),
            lower=True,
        )

    def _after(self, distribution: Any, handled: Any, late: Any, *leaves: Any) -> tf.Tensor:
        """After the step: count it; reset Keras' running metrics after a fault.

        ``handled``: 0, or the cause of a fault the guarded update already undid. ``late``:
        None, or (a loss the guarded update did not see) 0 or the cause of a fault to undo now.
        """
        status = self._agree(distribution, handled, tf.reduce_max)
        if late is not None:
            late = self._agree(distribution, late, tf.reduce_max)
            undo = tf.logical_and(tf.equal(status, 0), tf.not_equal(late, 0))

            def undo_now() -> tf.Tensor:
                self._fault(distribution, late, leaves)
                return tf.constant(True)

            _cond(undo, undo_now, lambda: tf.constant(False), lower=True)
            status = tf.maximum(status, late)
        self.step.assign_add(1)

        def reset() -> tf.Tensor:
            for metric in self.model.metrics:  # they would stay NaN for the epoch
                for var in metric.variables:
                    var.assign(tf.zeros_like(tf.convert_to_tensor(var)))
            return tf.constant(True)

        return _cond(tf.equal(status, 0), lambda: tf.constant(False), reset, lower=self.lower)

    def _hand_over(self, distribution: Any, row: tf.Tensor, leaves: tuple[Any, ...]) -> None:
        """The event and the batch (every replica's shard) to the host, on a fault only."""
        shards = [distribution.experimental_local_results(leaf) for leaf in leaves]
        replicas = len(shards[0]) if shards else 1
        tensors = [tf.identity(part) for r in range(replicas) for part in (s[r] for s in shards)]
        host = self.capture
        assert host is not None  # only called when the batch can be captured
        count = len(leaves)

        def run(row: Any, *arrays: Any) -> Any:
            parts = [list(arrays[r * count : (r + 1) * count]) for r in range(replicas)]
            return host(row.numpy(), parts)

        tf.py_function(run, [row, *tensors], Tout=tf.bool)

    # -- the wrapped train step -------------------------------------------------------------
    def wrap(self, train_step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``train_step`` with the guarded update and the after-step check."""
        outer, base = self.model.optimizer, self.optimizer
        apply_name = "apply_gradients" if is_tf_keras() else "apply"
        loss_name = "minimize" if is_tf_keras() else "scale_loss"

        def step(data: Any) -> Any:
            context = tf.distribute.get_replica_context()
            trace: dict[str, Any] = {"loss": None, "status": None}
            trace["before"] = context.merge_call(self._before) if self.non_trainable else []
            flat = tf.nest.flatten(data)
            # How to rebuild (x, y, sample_weight) from the leaves handed to the host.
            self.layout = (
                tf.nest.pack_sequence_as(data, list(range(len(flat)))),
                [t is not None for t in flat],
            )
            trace["leaves"] = [t for t in flat if t is not None] if self.capture else []
            original_apply = getattr(base, apply_name)
            original_loss = getattr(outer, loss_name)

            def capture_loss(loss: Any, *args: Any, **kwargs: Any) -> Any:
                if not callable(loss):
                    trace["loss"] = loss
                return original_loss(loss, *args, **kwargs)

            apply: Callable[..., Any]
            if is_tf_keras():

                def apply_tf_keras(grads_and_vars: Any, *args: Any, **kwargs: Any) -> Any:
                    pairs = list(grads_and_vars)
                    variables = [w for _, w in pairs]

                    def run(grads: Any, *rest: Any, **kw: Any) -> Any:
                        return original_apply(list(zip(grads, variables, strict=True)), *rest, **kw)

                    guarded = self._guarded_apply(run, trace)
                    return guarded([g for g, _ in pairs], *args, **kwargs)

                apply = apply_tf_keras
            else:

                def apply_keras3(grads: Any, *args: Any, **kwargs: Any) -> Any:
                    return self._guarded_apply(original_apply, trace)(list(grads), *args, **kwargs)

                apply = apply_keras3

            setattr(base, apply_name, apply)
            setattr(outer, loss_name, capture_loss)
            try:
                logs = train_step(data)
            finally:
                _unpatch(base, apply_name)
                _unpatch(outer, loss_name)
            handled = trace["status"]
            if handled is None:
                handled = tf.constant(0)
            late = None
            if trace["loss"] is None and isinstance(logs, dict) and "loss" in logs:
                # The guarded update did not see the loss: test the logged one.
                loss = tf.cast(tf.convert_to_tensor(logs["loss"]), tf.float32)
                bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(loss)))
                late = tf.where(bad, CAUSE_LOSS, 0)
            context.merge_call(self._after, args=(handled, late, *trace["leaves"]))
            return logs

        return step


def _unpatch(obj: Any, name: str) -> None:
    if name in obj.__dict__:
        delattr(obj, name)
