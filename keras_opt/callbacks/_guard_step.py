"""What `NaNGuard` adds to the train step: the decisions run in the graph, on the device.

`GuardedStep` owns a few variables (one snapshot of the model and optimizer
state, a fault counter, an event table, an LR scale) and wraps a model's
``train_step``:

1. At the start of a snapshot step (every ``backup_every``-th), the state the
   step starts from (weights, optimizer slots, BatchNorm statistics) is read
   into one flat tensor per dtype, before the forward pass and the update move it.
2. The step runs as Keras wrote it: the optimizer update (``apply`` in Keras 3,
   ``apply_gradients`` in tf_keras) is left in place, so that each variable's
   update still runs as soon as its gradient is ready, next to the rest of
   backpropagation. The guard only records the gradients it is given, the loss
   (captured from ``scale_loss`` / ``minimize``, or else the logged one), and
   swaps a Keras schedule for the same schedule times the guard's LR scale.
3. After the step (in cross-replica context under a ``tf.distribute``
   strategy, so that every replica agrees), the loss and every gradient are
   tested:

   * all finite, on a snapshot step: the state read in 1. is proven good by
     that finite loss; with ``check_weights`` it is tested, then copied into
     the snapshot;
   * all finite, on any other step: nothing;
   * a fault: the snapshot is put back (the update of this step with it), the
     LR is cut (or, after ``max_retries``, every later step is undone), the
     event is written into the event table, Keras' running metrics are reset
     (they would stay NaN for the epoch) and -- outside XLA only -- the batch
     is handed to the host.

A non-finite step therefore never outlives the train step that computed it,
and the end state is that of a skipped update followed by the rollback.
Nothing is read back to the host on a good step.

How it is decided costs more than what is decided. Each variable among the
inputs of a conditional node is passed on every step, taken or not: on a
2-core CPU VM, ~25 us for the first and ~3 us for each further one (an `If`
over 40 variables: +138 us; over 40 tensors: +10 us). So, outside XLA and
with one step per call (`make_train_function`):

* the host chooses the snapshot steps: it runs one of two traced train
  functions, with or without the read of 1. and its save (a select, no
  conditional), so no conditional decides it in the graph;
* the only conditional takes no variable: on a fault its branch runs
  `_fault` eagerly, through ``tf.py_function``, which reaches the variables
  directly. It depends on every stateful op of the step, since automatic
  control dependencies order it after the update only through variables.

Under XLA (compiled conditionals have no such cost, and ``tf.py_function``
cannot run) and with ``steps_per_execution > 1`` (several steps in one call),
one conditional in the graph decides, with the same `_fault`. Where a train
function is traced by someone else (a callback that re-traces after the guard
installed), the step decides in the graph too: slower, never wrong.

Putting the update itself inside the conditional, as ``LossScaleOptimizer``
does, would hold every variable's update back until the last gradient is
tested; it cost more on the same VM. ``benchmarks/callback_overhead.py`` has
the current figures.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt._state import base_optimizer, read_float, unique
from keras_opt.backend import is_tf_keras, keras

try:  # one-node conditionals (see `_case`); tf.switch_case where TensorFlow lacks it
    from tensorflow.python.ops.cond_v2 import indexed_case as _indexed_case
except ImportError:  # pragma: no cover
    _indexed_case = None

CAUSE_LOSS = 1  # non-finite loss or gradient: the update was undone
CAUSE_WEIGHTS = 2  # non-finite weights or optimizer state found before a snapshot
CAUSES = {CAUSE_LOSS: "loss", CAUSE_WEIGHTS: "weights"}
_ONLY_FIRST = tf.VariableAggregation.ONLY_FIRST_REPLICA


_MARK = "_keras_opt_nan_guard"  # set on every function the guard patches in


def _unpatch(obj: Any, name: str) -> None:
    if name in obj.__dict__:
        delattr(obj, name)


def _drop_stale_patch(obj: Any, name: str) -> None:
    """Remove a guard's patch that a ``fit`` left behind (it ended without ``on_train_end``).

    An exception or a KeyboardInterrupt inside ``fit`` skips ``on_train_end``: without this,
    the next guard would wrap the old one and both would act on every step.
    """
    if getattr(obj.__dict__.get(name), _MARK, False):
        _unpatch(obj, name)


def _by_replica(arrays: Any, replicas: int) -> list[list[Any]]:
    """Flat ``arrays`` (replica by replica, the same leaves each) as one list per replica."""
    count = len(arrays) // replicas if replicas else 0
    return [list(arrays[r * count : (r + 1) * count]) for r in range(replicas)]


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
    """``schedule(step) * scale``: swapped in only while the update is traced."""

    def __init__(self, schedule: Any, scale: tf.Variable) -> None:
        super().__init__()
        self.schedule, self.scale = schedule, scale

    def __call__(self, step: Any) -> Any:
        value = self.schedule(step)
        return value * tf.cast(self.scale, tf.convert_to_tensor(value).dtype)

    def get_config(self) -> dict[str, Any]:  # never serialized: it lives inside one trace
        return {}


def _case(index: Any, branches: list[Callable[[], Any]], *, lower: bool) -> Any:
    """``tf.switch_case``; with ``lower=False`` one node that runs only the branch taken.

    A conditional lowered to ``Switch``/``Merge`` nodes puts every captured
    tensor through a ``Switch`` and the whole graph into the executor's
    control-flow mode, on every step; a rarely taken branch is cheaper as one node.
    """
    index = tf.cast(index, tf.int32)
    if tf.executing_eagerly():  # run_eagerly=True
        return branches[int(index)]()
    if lower or _indexed_case is None:
        return tf.switch_case(index, branches)
    return _indexed_case(index, branches, lower_using_switch_merge=False)


def _cond(pred: Any, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
    return _case(pred, [false_fn, true_fn], lower=True)


class _PackedSnapshot:
    """One flat ``tf.Variable`` per dtype holding copies of many variables.

    Every variable a graph touches is an input of the graph's call, and of each
    conditional node that touches it, passed on every step even when the branch
    does not run. Packed, the snapshot of a model's few dozen variables is one
    or two inputs.
    """

    def __init__(self, variables: list[Any]) -> None:
        self.groups: dict[tf.DType, list[int]] = {}
        for i, v in enumerate(variables):
            self.groups.setdefault(tf.as_dtype(v.dtype), []).append(i)
        self.shapes = [tuple(v.shape) for v in variables]
        values = self.pack([tf.convert_to_tensor(v) for v in variables])
        self.flat = [
            _variable(value, dtype, f"keras_opt_nan_guard_snapshot_{dtype.name}")
            for dtype, value in zip(self.groups, values, strict=True)
        ]

    def pack(self, values: list[tf.Tensor]) -> list[tf.Tensor]:
        """``values`` (one per variable, in order) as one flat tensor per dtype."""
        packed = []
        for members in self.groups.values():
            parts = [tf.reshape(values[i], [-1]) for i in members]
            packed.append(parts[0] if len(parts) == 1 else tf.concat(parts, 0))
        return packed

    def current(self) -> list[tf.Tensor]:
        """The snapshot as `pack` returns it (reads, no copy)."""
        return [tf.convert_to_tensor(flat) for flat in self.flat]

    def save(self, packed: list[tf.Tensor], where: Any = None) -> None:
        """Copy ``packed`` (from `pack`) into the snapshot (only if ``where``, when given)."""
        for flat, value in zip(self.flat, packed, strict=True):
            if where is not None:
                value = tf.where(where, value, tf.convert_to_tensor(flat))
            flat.assign(value)

    def restore(self, variables: list[Any]) -> None:
        """Put the snapshot back into ``variables`` (those it was made for, in order)."""
        for flat, members in zip(self.flat, self.groups.values(), strict=True):
            sizes = [int(np.prod(self.shapes[i], dtype=np.int64)) for i in members]
            value = tf.convert_to_tensor(flat)
            parts = [value] if len(members) == 1 else tf.split(value, sizes)
            for i, part in zip(members, parts, strict=True):
                variables[i].assign(tf.reshape(part, self.shapes[i]))


class GuardedStep:
    """The in-graph state and logic of one `NaNGuard` during one ``fit``.

    Snapshot timing: when step ``k`` computes a finite loss and finite
    gradients, the weights and optimizer state that step ``k`` started from
    are proven good; on every ``backup_every``-th step they are then copied
    into the snapshot (read at the start of the step, before the forward pass
    moves the BatchNorm statistics and the update moves the rest). A fault at
    step ``k`` puts the copy back: it undoes step ``k`` and, through the loss
    of step ``k``, an update of step ``k - 1`` that left finite but poisoned
    weights.
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
        # While the host's train function runs: whether it chose a snapshot step.
        self._variant: bool | None = None
        self.host_steps = 0  # steps the host chose (the graph counts `step`)
        self.layout: tuple[Any, list[bool]] | None = None
        # One node per conditional on one device; lowered ones under several replicas.
        self.lower = model.distribute_strategy.num_replicas_in_sync > 1
        optimizer = base_optimizer(model.optimizer)
        self.optimizer = optimizer
        lr = optimizer._learning_rate
        self.lr_variable = None
        if not isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            self.lr_variable = lr
        skip = {id(v) for m in model.metrics for v in m.variables} | {id(lr)}
        self.all_state = [
            v
            for v in unique(
                [*model.trainable_variables, *optimizer.variables, *model.non_trainable_variables]
            )
            if id(v) not in skip
        ]
        # Replica threads trace at once under a strategy: each records into its own trace.
        self._local = threading.local()
        self._swap_lock = threading.Lock()
        self._swap_depth = 0
        self._swapped: Any = None
        self._patched: list[tuple[Any, str]] = []
        with model.distribute_strategy.scope():
            self.snapshot = _PackedSnapshot(self.all_state)
            if self.lr_variable is not None:
                # The LR of the update that produced the snapshot's state, and of the last update.
                lr_value = tf.convert_to_tensor(self.lr_variable)
                self.snap_lr = _variable(lr_value, lr_value.dtype, "keras_opt_nan_guard_snap_lr")
                self.last_lr = _variable(lr_value, lr_value.dtype, "keras_opt_nan_guard_last_lr")
            self.step = _variable(0, tf.int64, "keras_opt_nan_guard_step")
            self.faults = _variable(0, tf.int64, "keras_opt_nan_guard_faults")
            # 0, or NaN once the guard gave up: added to the finiteness test, it undoes every step.
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

    # -- the model and optimizer, patched for the fit (used while the step is traced) -------
    def install(self) -> None:
        """Wrap the model's ``train_step``; patch the optimizer's update and loss hooks.

        Undone by `uninstall`.
        """
        model, outer, base = self.model, self.model.optimizer, self.optimizer
        legacy = is_tf_keras()
        apply_name = "apply_gradients" if legacy else "apply"
        loss_name = "minimize" if legacy else "scale_loss"
        for obj, name in ((model, "train_step"), (base, apply_name), (outer, loss_name)):
            _drop_stale_patch(obj, name)
        original_step = model.train_step
        original_apply = getattr(base, apply_name)
        original_loss = getattr(outer, loss_name)

        def capture_loss(loss: Any, *args: Any, **kwargs: Any) -> Any:
            trace = getattr(self._local, "trace", None)
            if trace is not None and not callable(loss):
                trace["loss"] = loss
            return original_loss(loss, *args, **kwargs)

        def apply(grads: Any, *args: Any, **kwargs: Any) -> Any:
            trace = getattr(self._local, "trace", None)
            if trace is None:  # outside the guarded step
                return original_apply(grads, *args, **kwargs)
            grads = list(grads)
            if legacy:  # (gradient, variable) pairs
                trace["grads"].extend(g for g, _ in grads)
            else:
                trace["grads"].extend(grads)
            with self._scaled_lr():
                return original_apply(grads, *args, **kwargs)

        patches = (
            (model, "train_step", self._wrap(original_step)),
            (base, apply_name, apply),
            (outer, loss_name, capture_loss),
        )
        for obj, name, fn in patches:
            setattr(fn, _MARK, True)
            setattr(obj, name, fn)
            self._patched.append((obj, name))

    def uninstall(self) -> None:
        """Undo `install`."""
        for obj, name in self._patched:
            _unpatch(obj, name)
        self._patched = []

    @contextlib.contextmanager
    def _scaled_lr(self) -> Iterator[None]:
        """A Keras schedule times the guard's LR scale, while the update is traced."""
        if self.lr_variable is not None:
            yield
            return
        with self._swap_lock:
            if self._swap_depth == 0:
                self._swapped = self.optimizer._learning_rate
                self.optimizer._learning_rate = _ScaledLearningRate(self._swapped, self.scale)
            self._swap_depth += 1
        try:
            yield
        finally:
            with self._swap_lock:
                self._swap_depth -= 1
                if self._swap_depth == 0:
                    self.optimizer._learning_rate = self._swapped

    # -- the train function: snapshot steps chosen on the host -----------------------------
    def make_train_function(self) -> None:
        """Make the model's train function; outside XLA, two of them and a host-side choice.

        With one step per call and no XLA, the host knows which step is next: a snapshot
        step runs a function traced with the state read and saved in it, every other step
        one traced without, so neither needs a conditional with variable inputs (see the
        module docstring). Everywhere else (``jit_compile``, ``steps_per_execution > 1``, or a train
        function traced by someone else, e.g. a callback that re-traces after the guard)
        the step decides in the graph.
        """
        model = self.model
        model.make_train_function(force=True)
        steps = getattr(model, "steps_per_execution", 1)
        if (
            self.capture is None  # XLA: no tf.py_function
            or read_float(steps) != 1
            or getattr(model, "_autotune_steps_per_execution", False)
        ):
            return
        functions = {False: model.train_function}
        model.make_train_function(force=True)
        functions[True] = model.train_function

        def train_function(iterator: Any) -> Any:
            due = self.host_steps % self.backup_every == 0
            self._variant = due
            try:
                logs = functions[due](iterator)
            finally:
                self._variant = None
            self.host_steps += 1  # a call that raised (end of data) ran no step
            return logs

        setattr(train_function, _MARK, True)
        train_function.variants = functions  # type: ignore[attr-defined]  # for tests
        model.train_function = train_function

    @property
    def steps(self) -> int:
        """Eagerly: the steps run in this fit: those the host chose, and those the graph counted."""
        return self.host_steps + int(self.step.numpy())

    # -- pieces used inside the traced step (cross-replica context) --------------------
    def _before(self, distribution: Any, variant: bool | None) -> tuple[Any, ...]:
        """Whether this is a snapshot step; then the state it starts from (packed) and its LR.

        ``variant`` is None when the step decides in the graph, else whether the host
        chose a snapshot step. A float LR can change between steps (a callback sets it):
        the state this step starts from was produced with the LR of the previous update,
        which is the one to restore.
        """
        lr = None
        if self.lr_variable is not None:
            lr = tf.convert_to_tensor(self.last_lr)
            self.last_lr.assign(tf.convert_to_tensor(self.lr_variable))

        def read() -> list[tf.Tensor]:
            return self.snapshot.pack([tf.convert_to_tensor(v) for v in self.all_state])

        if variant is False:
            return None, None, lr
        if variant or self.backup_every == 1:
            return tf.constant(True), read(), lr
        due = tf.equal(tf.math.floormod(self.step, self.backup_every), 0)
        # Not due: the snapshot's own values stand in (a read, no copy; never saved).
        return due, _case(due, [self.snapshot.current, read], lower=self.lower), lr

    def _restore(self) -> None:
        self.snapshot.restore(self.all_state)
        if self.lr_variable is not None:
            for var in (self.lr_variable, self.last_lr):
                var.assign(tf.convert_to_tensor(self.snap_lr))

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
    def _agree(distribution: Any, value: Any) -> tf.Tensor:
        values = distribution.experimental_local_results(value)
        return values[0] if len(values) == 1 else tf.reduce_all(tf.stack(values))

    def _after(
        self,
        distribution: Any,
        before: tuple[Any, ...],
        variant: bool | None,
        local_ok: Any,
        leaves: Any,
    ) -> None:
        """After the step: refresh the snapshot, or undo the step; count it."""
        ok = self._agree(distribution, local_ok)
        due, packed, lr = before
        shards = [list(distribution.experimental_local_results(leaf)) for leaf in leaves]
        shards = [list(replica) for replica in zip(*shards, strict=True)] if shards else []
        if variant is None:
            step = tf.convert_to_tensor(self.step)
            self._decide_in_graph(ok, due, packed, lr, step, shards)
            self.step.assign_add(1)
            return
        if not variant:
            self._fault_on_host(tf.logical_not(ok), [CAUSE_LOSS], shards)
            return
        # A snapshot step: keep the state it started from if it proved good.
        good, index = ok, tf.where(ok, 0, 1)
        if self.check_weights:  # never keep a non-finite state: a fault
            finite = all_finite(packed)
            good = tf.logical_and(ok, finite)
            index = tf.where(ok, tf.where(finite, 0, 2), 1)
        self.snapshot.save(packed, where=good)
        if lr is not None:
            self.snap_lr.assign(tf.where(good, lr, tf.convert_to_tensor(self.snap_lr)))
        self._fault_on_host(index, [CAUSE_LOSS, CAUSE_WEIGHTS], shards)

    def _decide_in_graph(
        self, ok: Any, due: Any, packed: Any, lr: Any, step: Any, shards: list[list[Any]]
    ) -> None:
        """One conditional: nothing, the snapshot refreshed, or a fault (a node under XLA)."""

        def fault(cause: int) -> Callable[[], tf.Tensor]:
            def handle() -> tf.Tensor:
                self._fault(tf.constant(cause), step, shards)
                return tf.constant(cause)

            return handle

        def commit() -> tf.Tensor:
            # The loss just computed is finite: the state this step started from is good.
            def save() -> tf.Tensor:
                self.snapshot.save(packed)
                if lr is not None:
                    self.snap_lr.assign(lr)
                return tf.constant(0)

            if not self.check_weights:
                return save()
            # Never keep a non-finite state (e.g. an inf optimizer slot): a fault.
            return _cond(all_finite(packed), save, fault(CAUSE_WEIGHTS))

        if self.backup_every == 1:
            index = tf.where(ok, 1, 2)
        else:
            index = tf.where(ok, tf.where(due, 1, 0), 2)
        _case(index, [lambda: tf.constant(0), commit, fault(CAUSE_LOSS)], lower=self.lower)

    def _fault_on_host(self, index: Any, causes: list[int], shards: list[list[Any]]) -> None:
        """A conditional with no variable among its inputs: on a fault, `_fault` runs eagerly.

        ``index`` 0 is a good step, else ``causes[index - 1]`` is the fault's. The host
        reaches the variables directly. The node depends on every stateful op of the step:
        without a variable input, automatic control dependencies would not order it after
        the update.
        """
        flat = [t for replica in shards for t in replica]
        replicas = len(shards)

        def host(cause: int, arrays: Any) -> bool:
            with self.model.distribute_strategy.scope():
                self._fault(tf.constant(cause), self.steps, _by_replica(arrays, replicas))
            return True

        def fault(cause: int) -> Callable[[], tf.Tensor]:
            return lambda: tf.py_function(lambda *a: host(cause, a), flat, Tout=tf.bool)

        branches = [lambda: tf.constant(False), *(fault(c) for c in causes)]
        if tf.executing_eagerly():  # run_eagerly=True: in order anyway
            _case(index, branches, lower=self.lower)
            return
        graph = tf.compat.v1.get_default_graph()
        done = tf.group(*[op for op in graph.get_operations() if op._is_stateful])
        with tf.control_dependencies([done]):
            _case(index, branches, lower=self.lower)

    def _fault(self, cause: Any, step: Any, shards: list[list[Any]]) -> tf.Tensor:
        """Undo the step; cut the LR (or give up); record the event; reset metrics; hand over."""
        self._restore()
        for metric in self.model.metrics:  # they would stay NaN for the epoch
            for var in metric.variables:
                var.assign(tf.zeros_like(tf.convert_to_tensor(var)))
        step = tf.convert_to_tensor(step, tf.int64) + 1  # this step, 1-based

        def record() -> tf.Tensor:
            index = tf.convert_to_tensor(self.faults)
            before = self._current_lr()
            _cond(tf.less(index, self.max_retries), self._cut_lr, self._give_up)
            after = self._current_lr()
            row = tf.stack([tf.cast(step, tf.float64), tf.cast(cause, tf.float64), before, after])
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
                self._hand_over(full, shards)
            return tf.constant(True)

        # After giving up every step is undone, and nothing more is recorded.
        return _cond(
            tf.less_equal(self.faults, self.max_retries), record, lambda: tf.constant(False)
        )

    def _hand_over(self, row: tf.Tensor, shards: list[list[Any]]) -> None:
        """The event and the batch (each replica's shard of each leaf) to the host, on a fault."""
        host = self.capture
        assert host is not None  # only called when the batch can be captured
        replicas = len(shards)
        tensors = [tf.identity(part) for shard in shards for part in shard]

        def run(row: Any, *arrays: Any) -> Any:
            return host(row.numpy(), _by_replica(arrays, replicas))

        tf.py_function(run, [row, *tensors], Tout=tf.bool)

    # -- the wrapped train step -------------------------------------------------------------
    def _wrap(self, train_step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``train_step`` with the snapshot read before it and the after-step conditional."""

        def step(data: Any) -> Any:
            context = tf.distribute.get_replica_context()
            trace: dict[str, Any] = {"loss": None, "grads": []}
            variant = self._variant  # set by the host's train function while it runs
            before = context.merge_call(self._before, args=(variant,))
            flat = tf.nest.flatten(data)
            # How to rebuild (x, y, sample_weight) from the leaves handed to the host.
            self.layout = (
                tf.nest.pack_sequence_as(data, list(range(len(flat)))),
                [t is not None for t in flat],
            )
            leaves = [t for t in flat if t is not None] if self.capture else []
            self._local.trace = trace
            try:
                logs = train_step(data)
            finally:
                self._local.trace = None
            loss = trace["loss"]
            if loss is None and isinstance(logs, dict):
                # The update did not see the loss (a custom train_step): test the logged one.
                loss = logs.get("loss")
            tested = [self.poison, *trace["grads"]]
            if loss is not None:
                tested.append(tf.cast(loss, tf.float32))  # summed in float32 by all_finite
            local_ok = all_finite(tested)

            def after(distribution: Any, local_ok: Any, *leaves: Any) -> None:
                self._after(distribution, before, variant, local_ok, leaves)

            context.merge_call(after, args=(local_ok, *leaves))
            return logs

        return step
