"""Pruning: target sparsity from the stripped weights, 2:4, schedules, errors (both flavors).

Under Keras 3 the native engine serves `prune` and fits need no callback;
under tf_keras TFMOT does, with `kopt.callbacks`.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import keras_opt.optimization as kopt
from keras_opt import backend
from keras_opt.backend import keras
from keras_opt.optimization import _weights
from tests.conftest import build_residual_cnn, build_sequential_cnn, compile_classifier
from tests.optimization.conftest import accuracy, pruning_mask, pruning_steps, wrapper_of


def _kernel_sparsity(model, names):
    zeros = total = 0
    for name in names:
        kernel = model.get_layer(name).get_weights()[0]
        zeros += int((kernel == 0).sum())
        total += kernel.size
    return zeros / total


@pytest.fixture(scope="module")
def pruned_80(trained_residual, digits):
    x, y, _, _ = digits
    pruned = compile_classifier(kopt.prune(trained_residual, target_sparsity=0.8))
    pruned.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=kopt.callbacks(pruned))
    return pruned


def test_target_sparsity_alone_is_reached_within_the_fit(pruned_80, trained_residual, digits):
    _, _, x_test, y_test = digits
    stripped = kopt.strip(pruned_80)
    for name in ("stem", "res_conv", "head"):
        assert _kernel_sparsity(stripped, [name]) == pytest.approx(0.8, abs=0.01)
    assert kopt.compression_summary(stripped).sparsity == pytest.approx(0.8, abs=0.01)
    # Still a working classifier after a short fine-tune (chance is 0.1; the benchmark
    # measures the accuracy of a longer fine-tune against the quality targets).
    assert accuracy(stripped, x_test, y_test) > 0.6
    # The original model is left dense.
    assert _kernel_sparsity(trained_residual, ["head"]) < 0.01


def test_stripped_model_saves_to_keras_and_loads_back(pruned_80, digits, tmp_path):
    _, _, x_test, _ = digits
    stripped = kopt.strip(pruned_80)
    assert all(type(layer).__module__.startswith(keras.__name__) for layer in stripped.layers)
    path = tmp_path / "pruned.keras"
    stripped.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x_test[:16], verbose=0), stripped.predict(x_test[:16], verbose=0), atol=1e-6
    )
    assert _kernel_sparsity(loaded, ["head"]) == pytest.approx(0.8, abs=0.01)


def test_structured_2_by_4_is_exact(trained_residual, digits):
    x, y, _, _ = digits
    pruned = compile_classifier(kopt.prune(trained_residual, structured="2:4", layers=["head"]))
    pruned.fit(
        x[:256], y[:256], epochs=1, batch_size=64, verbose=0, callbacks=kopt.callbacks(pruned)
    )
    kernel = kopt.strip(pruned).get_layer("head").get_weights()[0]  # (C_IN, C_OUT)
    groups = kernel.T.reshape(kernel.shape[1], -1, 4)  # 4 consecutive input channels
    assert np.all((groups == 0).sum(axis=-1) == 2)


def test_constant_schedule_in_epochs_and_layer_choice(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn())
    pruned = compile_classifier(
        kopt.prune(
            model, 0.5, schedule="constant", begin=1, unit="epochs", skip=[keras.layers.Dense]
        )
    )
    names = [layer.name for layer in pruned.layers if type(layer).__name__ == "PruneLowMagnitude"]
    assert len(names) == 1
    assert "conv2d" in names[0]
    cbs = kopt.callbacks(pruned)
    pruned.fit(x[:320], y[:320], epochs=1, batch_size=64, verbose=0, callbacks=cbs)
    wrapper = pruned.get_layer(names[0])
    start = 1 if backend.is_tf_keras() else 0  # TFMOT's step counter starts at -1
    steps = pruning_steps(wrapper)
    assert (steps.begin, steps.end) == (start + 5, -1)  # one epoch of 5 steps; no end
    assert steps.frequency == 1  # about 10 updates in a fit of 5 steps: every step
    assert float(np.mean(pruning_mask(wrapper))) == 1.0  # not pruned before epoch 1
    pruned.fit(x[:320], y[:320], epochs=1, batch_size=64, verbose=0, callbacks=cbs)
    rows = [row for row in kopt.compression_summary(kopt.strip(pruned)).layers if row.compressible]
    assert [row.type for row in rows] == ["Conv2D", "Dense"]
    assert rows[0].sparsity == pytest.approx(0.5, abs=0.01)
    assert rows[1].sparsity < 0.01


@pytest.mark.tf_keras_only
def test_tfmot_fit_without_the_callbacks_fails_clearly(trained_residual, digits):
    x, y, _, _ = digits
    pruned = compile_classifier(kopt.prune(trained_residual, target_sparsity=0.5))
    with pytest.raises(RuntimeError, match=r"callbacks=keras_opt\.optimization\.callbacks"):
        pruned.fit(x[:64], y[:64], epochs=1, verbose=0)
    with pytest.raises(RuntimeError, match="is training before that fit resolved it"):
        pruned.fit(x[:64], y[:64], epochs=1, verbose=0, callbacks=[keras.callbacks.History()])


@pytest.mark.keras3_only
def test_native_fit_needs_no_callback_and_the_schedule_follows_the_formula(
    trained_residual, digits
):
    x, y, _, _ = digits
    pruned = compile_classifier(kopt.prune(trained_residual, target_sparsity=0.6))
    assert kopt.callbacks(pruned) == []
    wrapper = pruned.get_layer("head")
    assert pruning_steps(wrapper) is None  # fitted to the fit below
    pruned.fit(x[:640], y[:640], epochs=2, batch_size=64, verbose=0)  # 20 steps
    steps = pruning_steps(wrapper)
    # Ramp over the first 70% of the fit: int(0.7 * 19) = 13 -> 13 // 10 = 1 step apart.
    assert (steps.begin, steps.end, steps.frequency) == (0, 13, 1)
    assert int(wrapper.step.numpy()) == 20
    assert float(1 - pruning_mask(wrapper).mean()) == pytest.approx(0.6, abs=0.01)


@pytest.mark.keras3_only
def test_native_mask_at_each_step_matches_the_polynomial_formula(trained_residual, digits):
    from keras_opt.optimization import _plan

    x, y, _, _ = digits
    pruned = compile_classifier(
        kopt.prune(trained_residual, 0.8, end=8, frequency=2, layers=["head"])
    )
    wrapper = pruned.get_layer("head")
    plan, steps = wrapper.plan, pruning_steps(wrapper)
    assert (steps.begin, steps.end, steps.frequency) == (0, 8, 2)
    seen = []
    for step in range(10):
        pruned.train_on_batch(x[step * 32 : (step + 1) * 32], y[step * 32 : (step + 1) * 32])
        seen.append(float(1 - pruning_mask(wrapper).mean()))
        last_update = min(step - step % 2, 8)
        expected = _plan.polynomial_sparsity(plan, steps, last_update)
        assert seen[-1] == pytest.approx(expected, abs=1.5 / np.prod(wrapper.layer.kernel.shape))
    assert seen[-1] == pytest.approx(0.8, abs=0.001)


@pytest.mark.keras3_only
def test_native_model_built_around_a_pruned_one_fails_clearly(trained_residual, digits):
    x, y, _, _ = digits
    pruned = kopt.prune(trained_residual, target_sparsity=0.5)
    outer = compile_classifier(keras.Sequential([keras.Input((8, 8, 1)), pruned]))
    with pytest.raises(RuntimeError, match="call `fit` on the model prune\\(\\) returned"):
        outer.fit(x[:64], y[:64], epochs=1, verbose=0)


@pytest.mark.tf_keras_only
def test_callbacks_add_pruning_summaries_on_request(trained_residual, digits, tmp_path):
    x, y, _, _ = digits
    pruned = compile_classifier(kopt.prune(trained_residual, target_sparsity=0.5))
    cbs = kopt.callbacks(pruned, log_dir=str(tmp_path))
    assert [type(cb).__name__ for cb in cbs] == ["PruningStep", "PruningSummaries"]
    assert not list(tmp_path.iterdir())  # nothing written before fit
    cbs = copy.deepcopy(cbs)
    pruned.fit(x[:128], y[:128], epochs=1, batch_size=64, verbose=0, callbacks=cbs)
    assert list((tmp_path / "metrics").iterdir())  # TensorBoard event file with sparsity
    assert kopt.callbacks(trained_residual) == []
    with pytest.raises(ValueError, match="Argument `log_dir`"):
        kopt.callbacks(pruned, log_dir="")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_sparsity": 1.0}, r"Argument `target_sparsity` must be in \[0.0, 1.0\)"),
        ({"target_sparsity": -0.1}, r"Received: target_sparsity=-0.1"),
        ({}, r"Argument `target_sparsity`.*structured='2:4'"),
        ({"target_sparsity": 0.5, "structured": "2:4"}, "fixes it at M/N"),
        ({"structured": "4:2"}, r"Argument `structured` .* Received: structured='4:2'"),
        ({"target_sparsity": 0.5, "schedule": "cosine"}, "Argument `schedule`"),
        ({"target_sparsity": 0.5, "unit": "batches"}, "Argument `unit`"),
        ({"target_sparsity": 0.5, "begin": 3, "end": 2}, r"Argument `end` must be > begin=3"),
        ({"target_sparsity": 0.5, "layers": ["hed"]}, r"Received: layers='hed'"),
        ({"target_sparsity": 0.5, "layers": ["flatten"]}, "no weights that can be pruned"),
        ({"target_sparsity": 0.5, "layers": ["stem_bn"]}, "no weights that can be pruned"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kopt.prune(build_residual_cnn(), **kwargs)


def test_a_model_without_prunable_layers_is_refused():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="must be a model with at least one prunable layer"):
        kopt.prune(model, target_sparsity=0.5)
    with pytest.raises(ValueError, match="at least one clusterable layer"):
        kopt.cluster(model, 8)


def test_a_subclassed_model_is_refused_with_what_to_do_instead():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, inputs):
            return self.dense(inputs)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(TypeError, match="write the same network with the functional API"):
        kopt.prune(net, target_sparsity=0.5)
    with pytest.raises(TypeError, match="Sequential or Functional"):
        kopt.cluster(net, 8)


def test_prune_rejects_a_non_model():
    with pytest.raises(TypeError, match="Argument `model`"):
        kopt.prune(object(), target_sparsity=0.5)


def test_summary_of_a_pruned_model_reads_the_masked_weights(pruned_80):
    row = kopt.compression_summary(pruned_80)["head"]
    assert row.wrappers == ("prune",)
    assert row.sparsity == pytest.approx(0.8, abs=0.01)
    arrays = _weights.main_weights(wrapper_of(pruned_80, "head"))
    assert set(arrays) == {"kernel"}
