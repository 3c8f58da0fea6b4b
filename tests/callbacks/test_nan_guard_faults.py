"""NaNGuard against injected faults: a NaN batch, an inf state, schedules, XLA, two replicas."""

from __future__ import annotations

import logging
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_opt.backend import keras
from keras_opt.callbacks import LRScheduler, NaNGuard
from keras_opt.schedules import OneCycle
from tests._fresh_process import run_script
from tests.conftest import build_sequential_cnn, compile_classifier

BATCH = 100


class Recorder(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append(self.model.get_weights())
        self.guard_function = getattr(self.model.train_function, "_keras_opt_nan_guard", False)


class PoisonMovingVariance(keras.callbacks.Callback):
    """Puts an inf into BatchNorm's moving variance before one batch (the loss never shows it)."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.batch:
            bn = next(la for la in self.model.layers if "batch_normalization" in la.name)
            value = np.asarray(bn.moving_variance).copy()
            value[0] = np.inf
            bn.moving_variance.assign(value)


def _nan_batch(x, batch):
    x = x.copy()
    x[batch * BATCH + 3] = np.nan
    return x


def _fit_nan_batch_3(model, x, y):
    """One epoch of 8 batches, a NaN in batch 3, under NaNGuard(factor=0.5, backup_every=1)."""
    recorder, guard = Recorder(), NaNGuard(factor=0.5, backup_every=1)
    model.fit(
        _nan_batch(x, 3)[:800],
        y[:800],
        batch_size=BATCH,
        shuffle=False,
        callbacks=[guard, recorder],
        verbose=0,
    )
    return recorder, guard


def _same(a, b):
    return all(np.array_equal(u, w) for u, w in zip(a, b, strict=True))


def test_nan_in_one_batch_skips_it_and_restores_the_state_before(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.05))
    recorder, guard = Recorder(), NaNGuard(factor=0.5, backup_every=1)
    history = model.fit(
        _nan_batch(x, 3),
        y,
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        callbacks=[guard, recorder],
        verbose=0,
    )
    assert [(e["batch"], e["cause"]) for e in guard.rescues] == [(3, "loss")]
    # The NaN batch proved nothing: back to the last state a finite loss proved (after batch 1),
    # BatchNorm statistics included, and the LR cut.
    assert _same(recorder.weights[3], recorder.weights[1])
    assert guard.rescues[0]["lr"] == pytest.approx(0.05)
    assert guard.rescues[0]["new_lr"] == pytest.approx(0.025)
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(0.025)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(history.history["loss"]).all()
    assert guard.report is None


def test_inf_in_the_state_that_the_loss_does_not_show_is_rolled_back(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.05))
    recorder, guard = Recorder(), NaNGuard(factor=0.5, backup_every=1)
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=1,
        shuffle=False,
        callbacks=[PoisonMovingVariance(4), guard, recorder],
        verbose=0,
    )
    assert [(e["batch"], e["cause"]) for e in guard.rescues] == [(4, "weights")]
    assert _same(recorder.weights[4], recorder.weights[2])
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_without_check_weights_that_inf_is_not_seen(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.05))
    guard = NaNGuard(check_weights=False, backup_every=1)
    model.fit(
        x[:800],
        y[:800],
        batch_size=BATCH,
        shuffle=False,
        callbacks=[PoisonMovingVariance(4), guard],
        verbose=0,
    )
    assert guard.rescues == []


class OwnTrainStep(keras.Sequential):
    """A custom ``train_step`` that applies its gradients itself: the guard never sees its loss.

    A label of -1 adds a NaN to the logged loss behind ``stop_gradient``: the gradients stay
    finite, so only the logged loss shows the fault.
    """

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    tf.maximum(y, 0.0), self(x, training=True)
                )
            )
            nan = tf.where(tf.reduce_any(y < 0), np.float32(np.nan), np.float32(0.0))
            total = loss + tf.stop_gradient(nan)
        grads = tape.gradient(total, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        return {"loss": total}


def test_a_loss_only_the_logs_show_is_undone_after_the_step(digits):
    x, y, _, _ = digits
    y = y.astype("float32")
    y[3 * BATCH + 5] = -1.0
    model = OwnTrainStep([keras.Input((8, 8, 1)), *build_sequential_cnn().layers])
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    recorder, guard = Recorder(), NaNGuard(factor=0.5, backup_every=1)
    model.fit(
        x[:800], y[:800], batch_size=BATCH, shuffle=False, callbacks=[guard, recorder], verbose=0
    )
    assert [(e["batch"], e["cause"]) for e in guard.rescues] == [(3, "loss")]
    # The update of batch 3 (its gradients were finite) is undone after the step, back to the
    # last state a finite loss proved (after batch 1, as for a NaN in the data), with the LR cut.
    assert _same(recorder.weights[3], recorder.weights[1])
    assert not _same(recorder.weights[4], recorder.weights[3])
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(0.025)


class Retrace(keras.callbacks.Callback):
    """Re-traces the train function after the guard installed (as some callbacks do)."""

    def on_train_begin(self, logs=None):
        self.model.make_train_function(force=True)


@pytest.mark.parametrize("decided_in", ["host", "graph"])
@pytest.mark.parametrize(("bad", "back_to"), [(3, 1), (4, 1), (5, 3)])
def test_backup_every_2_rolls_back_to_the_last_proven_snapshot(digits, bad, back_to, decided_in):
    """Snapshots on steps 0, 2, 4: each is the state its step started from, once that step's
    loss proved it. A fault on a snapshot step (4) does not keep its unproven state. The same
    whether the host picks the snapshot steps (the guard's own train function) or the graph
    does (a train function traced after the guard's, by a later callback)."""
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.05, momentum=0.5))
    recorder, guard = Recorder(), NaNGuard(factor=0.5, backup_every=2)
    model.fit(
        _nan_batch(x, bad)[:800],
        y[:800],
        batch_size=BATCH,
        shuffle=False,
        callbacks=[guard, recorder, *([Retrace()] if decided_in == "graph" else [])],
        verbose=0,
    )
    assert [(e["batch"], e["cause"]) for e in guard.rescues] == [(bad, "loss")]
    assert _same(recorder.weights[bad], recorder.weights[back_to])
    # The guard's own train function (marked) chooses between its two traced ones.
    assert recorder.guard_function == (decided_in == "host")


@pytest.mark.parametrize(
    "compile_kwargs", [{"run_eagerly": True}, {"steps_per_execution": 2}], ids=["eager", "spe2"]
)
def test_eager_and_several_steps_per_call_roll_back_in_the_step(digits, compile_kwargs):
    """run_eagerly (no graph) and steps_per_execution=2 (the graph decides): same rescue."""
    x, y, _, _ = digits
    model = build_sequential_cnn()
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss="sparse_categorical_crossentropy",
        **compile_kwargs,
    )
    recorder, guard = _fit_nan_batch_3(model, x, y)
    assert [(e["batch"], e["cause"]) for e in guard.rescues] == [(3, "loss")]
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(0.025)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    if "run_eagerly" in compile_kwargs:  # every batch seen: back to the state after batch 1
        assert _same(recorder.weights[3], recorder.weights[1])


class Interrupt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 2:
            raise KeyboardInterrupt  # fit ends without on_train_end


def test_a_fit_cut_short_leaves_no_second_guard_behind(digits, caplog):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.05))
    with pytest.raises(KeyboardInterrupt):
        model.fit(
            x[:800], y[:800], batch_size=BATCH, callbacks=[NaNGuard(), Interrupt()], verbose=0
        )
    with caplog.at_level(logging.WARNING, logger="keras_opt"):
        recorder, guard = _fit_nan_batch_3(model, x, y)
    # One guard acted (the first fit's guard, left wrapped inside, would report the fault too).
    assert [(e["batch"], e["cause"]) for e in guard.rescues] == [(3, "loss")]
    assert sum("NaNGuard: non-finite" in r.getMessage() for r in caplog.records) == 1
    assert _same(recorder.weights[3], recorder.weights[1])
    assert "train_step" not in model.__dict__
    assert not any(n in model.optimizer.__dict__ for n in ("apply", "apply_gradients"))


def test_keras_schedule_in_the_optimizer_is_scaled(digits):
    x, y, _, _ = digits
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=4, decay_rate=0.5)
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(schedule))
    guard = NaNGuard(factor=0.1, backup_every=1)
    model.fit(_nan_batch(x, 5), y, batch_size=BATCH, shuffle=False, callbacks=[guard], verbose=0)
    (event,) = guard.rescues
    assert (event["batch"], event["cause"]) == (5, "loss")
    # Restored to the state of step 4 (optimizer.iterations == 4): the schedule's LR there,
    # cut by the factor through the guard's in-graph scale.
    assert event["lr"] == pytest.approx(float(schedule(4)), rel=1e-6)
    assert event["new_lr"] == pytest.approx(0.1 * float(schedule(4)), rel=1e-6)
    # The optimizer keeps its own schedule object.
    assert model.optimizer._learning_rate is schedule
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_lr_scheduler_schedule_is_scaled(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.1, momentum=0.9))
    guard = NaNGuard(factor=0.5, backup_every=1)
    model.fit(
        _nan_batch(x, 6),
        y,
        batch_size=BATCH,
        shuffle=False,
        callbacks=[LRScheduler(OneCycle(max_lr=0.1)), guard],
        verbose=0,
    )
    (event,) = guard.rescues
    expected = OneCycle(max_lr=0.1, total_steps=len(x) // BATCH).lr_at(5)
    assert event["batch"] == 6
    assert event["lr"] == pytest.approx(expected, rel=1e-5)
    assert event["new_lr"] == pytest.approx(0.5 * expected, rel=1e-5)


def test_jit_compile_rolls_back_and_reports_at_epoch_end(digits, caplog):
    x, y, _, _ = digits
    model = build_sequential_cnn()
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss="sparse_categorical_crossentropy",
        jit_compile=True,
    )
    guard = NaNGuard(max_retries=0, backup_every=1)
    with caplog.at_level(logging.WARNING, logger="keras_opt"):
        model.fit(
            _nan_batch(x, 2)[:600],
            y[:600],
            batch_size=BATCH,
            epochs=2,
            shuffle=False,
            callbacks=[guard],
            verbose=0,
        )
    assert any("XLA-compiled" in r.getMessage() for r in caplog.records)
    assert guard.report is not None
    assert guard.report["batch"] == 2
    assert guard.report["batch_file"] is None
    assert "XLA" in guard.report["message"]
    assert all(np.isfinite(w).all() for w in model.get_weights())


SCRIPT = textwrap.dedent(
    """
    import json, tempfile
    import numpy as np
    import tensorflow as tf
    from keras_opt.backend import keras
    from keras_opt.callbacks import NaNGuard

    rng = np.random.RandomState(0)
    x = rng.rand(128, 6).astype("float32")
    y = (x.sum(1) > 3).astype("int64")
    x[2 * 16 + 9] = np.nan  # batch 2, second replica's shard
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.BatchNormalization(),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                      loss="sparse_categorical_crossentropy")
    rescue = NaNGuard(factor=0.5, backup_every=1)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[rescue])
    lr = float(np.asarray(model.optimizer.learning_rate))
    finite = bool(all(np.isfinite(w).all() for w in model.get_weights()))
    out = tempfile.mkdtemp()
    give_up = NaNGuard(max_retries=0, save_dir=out)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[give_up])
    saved = np.load(give_up.report["batch_file"])
    print("RESULT" + json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "rescues": [(e["batch"], e["cause"]) for e in rescue.rescues],
        "lr": lr,
        "finite": finite,
        "report_batch": give_up.report["batch"],
        "saved_matches": bool(np.array_equal(saved["x0"], x[32:48], equal_nan=True)),
    }))
    """
)


@pytest.mark.slow
def test_under_mirrored_strategy_on_two_logical_cpus():
    result = run_script(SCRIPT, two_cpus=True)
    assert result["replicas"] == 2
    assert [tuple(r) for r in result["rescues"]] == [(2, "loss")]
    assert result["lr"] == pytest.approx(0.05)
    assert result["finite"]
    # Both replicas' shards of the offending batch, put back together in order.
    assert result["report_batch"] == 2
    assert result["saved_matches"]


def _fault_nodes(graph_def):
    """(its graph's nodes, node) for each conditional whose branches call the host."""
    library = {f.signature.name: f for f in graph_def.library.function}

    def calls_host(name):
        return any(n.op == "EagerPyFunc" for n in library[name].node_def)

    found = []
    for nodes in [list(graph_def.node), *(f.node_def for f in library.values())]:
        for node in nodes:
            if node.op in ("If", "Case", "StatelessIf", "StatelessCase"):
                names = [b.name for b in node.attr["branches"].list.func] or [
                    node.attr[k].func.name for k in ("then_branch", "else_branch")
                ]
                if any(calls_host(n) for n in names):
                    found.append((nodes, node))
    return found


def _concrete(train_function, iterator):
    """tf_keras' train function is a tf.function; Keras 3's a Python function around one."""
    if not hasattr(train_function, "get_concrete_function"):
        cells = [c.cell_contents for c in train_function.__closure__ or ()]
        train_function = next(c for c in cells if hasattr(c, "get_concrete_function"))
    return train_function.get_concrete_function(iterator)


def test_the_host_runs_after_every_update_of_the_step(digits):
    """The fault's conditional takes no variable, so automatic control dependencies do not
    order it: it must wait, through its control inputs, for every variable write of the step."""
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn(), keras.optimizers.SGD(0.05, momentum=0.5))
    model.fit(x[:200], y[:200], batch_size=BATCH, verbose=0)
    guard = NaNGuard()
    guard.set_model(model)
    guard.on_train_begin()
    try:
        variants = model.train_function.variants
        iterator = iter(tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH))
        guard._graph._variant = False  # traced as the host's train function traces it
        graph_def = _concrete(variants[False], iterator).graph.as_graph_def()
    finally:
        guard._graph._variant = None
        guard.on_train_end()
    ((function, node),) = _fault_nodes(graph_def)
    nodes = {n.name: n for n in function}
    before, stack = set(), list(node.input)
    while stack:  # everything the conditional waits for, through control and data inputs
        name = stack.pop().lstrip("^").split(":")[0]
        if name in nodes and name not in before:
            before.add(name)
            stack.extend(nodes[name].input)
    # The writes made before it (nodes are listed in the order they were made; tf_keras counts
    # the step after the train step).
    made_before = function[: [n.name for n in function].index(node.name)]
    writes = {n.name for n in made_before if n.op.startswith(("Assign", "ResourceApply"))}
    assert len(writes) >= 4  # the momentum SGD update of the CNN's variables
    assert writes <= before
