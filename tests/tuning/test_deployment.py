"""Trials scored on their TFLite artifact: budgets, Pareto front, export of the best."""

from __future__ import annotations

import json
import math
import os
import pathlib

import pytest

from keras_opt.tuning import Deployment, GridSearch, export_best, pareto_front, rank_trials
from tests.tuning.conftest import build_dense


@pytest.fixture(scope="module")
def searched(flat_digits, tmp_path_factory):
    """A grid search over Dense width 8 vs 64 (relu), scored on the float16 artifact."""
    x, y, xv, yv = flat_digits
    deployment = Deployment(
        eval_data=(xv, yv),
        variant="float16",
        max_size_kb=6.0,  # the 8-unit model (~2-3 KB) fits; the 64-unit one (~10 KB) does not
        runs=5,
        isolation="none",
    )
    directory = tmp_path_factory.mktemp("deploy")

    def build(hp):
        hp.Fixed("activation", "relu")
        return build_dense(hp)

    tuner = GridSearch(
        build,
        objective=deployment.objective,
        deployment=deployment,
        max_trials=2,
        directory=str(directory),
        project_name="deploy",
    )
    tuner.search(x, y, epochs=3, batch_size=100, verbose=0)
    return tuner, deployment


def test_trial_metrics_are_measured_from_the_artifact(searched):
    tuner, deployment = searched
    trials = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    assert len(trials) == 2
    for trial in trials:
        metrics = {k: trial.metrics.get_last_value(k) for k in trial.metrics.metrics}
        folder = os.path.join(tuner.get_trial_dir(trial.trial_id), "tflite")
        manifest = json.loads(pathlib.Path(folder, "manifest.json").read_text())
        (entry,) = manifest["variants"]
        size = os.path.getsize(os.path.join(folder, entry["file"]))
        assert metrics["tflite_size_kb"] == pytest.approx(size / 1024)
        assert metrics["tflite_accuracy"] == pytest.approx(entry["metrics"]["accuracy"])
        assert metrics["tflite_latency_ms"] == pytest.approx(entry["latency_ms"]["p50"])
        assert metrics["deploy_score"] == pytest.approx(deployment.score(metrics))


def test_budget_ranking_prefers_the_model_that_fits(searched):
    tuner, _ = searched
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.hyperparameters.values["units"] == 8
    over = [t for t in tuner.oracle.trials.values() if t.hyperparameters.values["units"] == 64][0]
    over_metrics = {k: over.metrics.get_last_value(k) for k in over.metrics.metrics}
    # More accurate, but over the size budget: ranked below by construction.
    assert over_metrics["tflite_size_kb"] > 6.0
    assert over_metrics["deploy_score"] < 0
    ranked = rank_trials(tuner, max_size_kb=6.0)
    assert [r["hyperparameters"]["units"] for r in ranked] == [8]
    assert [r["hyperparameters"]["units"] for r in rank_trials(tuner)][0] == 64


def test_pareto_front_keeps_the_trade_off(searched):
    tuner, _ = searched
    front = pareto_front(tuner, [("tflite_accuracy", "max"), ("tflite_size_kb", "min")])
    assert sorted(r["hyperparameters"]["units"] for r in front) == [8, 64]


def test_pareto_front_drops_dominated_trials():
    rows = [
        {"trial_id": "a", "metrics": {"acc": 0.9, "ms": 2.0, "kb": 10}},
        {"trial_id": "b", "metrics": {"acc": 0.9, "ms": 2.0, "kb": 12}},  # dominated by a
        {"trial_id": "c", "metrics": {"acc": 0.95, "ms": 3.0, "kb": 10}},
        {"trial_id": "d", "metrics": {"acc": 0.5}},  # missing metrics: ignored
    ]
    front = pareto_front(rows, [("acc", "max"), ("ms", "min"), ("kb", "min")])
    assert [r["trial_id"] for r in front] == ["c", "a"]
    with pytest.raises(ValueError, match=r"`objectives` must be"):
        pareto_front(rows, [("acc", "up")])


def test_export_best_writes_the_winner_like_any_export(searched, tmp_path, flat_digits):
    tuner, _ = searched
    _, _, xv, yv = flat_digits
    result = export_best(
        tuner, tmp_path / "best", eval_data=(xv, yv), variants=["float16"], isolation="none", runs=5
    )
    assert os.path.exists(result.manifest_path)
    assert result["float16"]["metrics"]["accuracy"] > 0.5


def test_a_trial_is_scored_on_its_int4_file(flat_digits, tmp_path):
    x, y, xv, yv = flat_digits
    model = build_dense(_FixedHP(units=8))
    model.fit(x, y, epochs=2, verbose=0)
    deployment = Deployment(eval_data=(xv, yv), variant="int4_weights", runs=3, isolation="none")
    metrics = deployment.measure(model, str(tmp_path))
    assert metrics["tflite_accuracy"] > 0.5
    assert metrics["tflite_size_kb"] == pytest.approx(
        os.path.getsize(tmp_path / "int4_weights.tflite") / 1024
    )
    assert metrics["deploy_score"] == metrics["tflite_accuracy"]


class _FixedHP:
    """Just enough of a HyperParameters object for `build_dense` outside a search."""

    def __init__(self, **values):
        self.values = values

    def Choice(self, name, options):  # noqa: N802 - KerasTuner's method name
        return self.values.get(name, options[0])

    def Fixed(self, name, value):  # noqa: N802
        return value


def test_deployment_score_formula():
    d = Deployment(eval_data=([0], [0]), variant="float32", max_latency_ms=2.0, max_size_kb=10.0)
    ok = {"tflite_accuracy": 0.8, "tflite_latency_ms": 1.0, "tflite_size_kb": 9.0}
    assert d.score(ok) == 0.8
    over = {"tflite_accuracy": 0.99, "tflite_latency_ms": 3.0, "tflite_size_kb": 15.0}
    assert d.score(over) == pytest.approx(0.99 - 1.0 - (0.5 + 0.5))
    assert d.score({**ok, "tflite_accuracy": math.nan}) == -math.inf


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"eval_data": [1, 2, 3]}, TypeError, r"`eval_data` must be a pair \(x, y\)"),
        (
            {"eval_data": ([0], [0]), "variant": "int4"},
            ValueError,
            r"`variant` contains an unknown variant 'int4'",
        ),
        (
            {"eval_data": ([0], [0]), "variant": "aeq:nope"},
            ValueError,
            r"unknown AI Edge Quantizer",
        ),
        ({"eval_data": ([0], [0]), "variant": "mixed"}, ValueError, r"needs calibration data"),
        ({"eval_data": ([0], [0]), "variant": "int8,mixed"}, TypeError, r"one variant name"),
        ({"eval_data": ([0], [0]), "variant": "int8"}, ValueError, r"needs calibration data"),
        (
            {"eval_data": ([0], [0]), "variant": "float16", "max_size_kb": 0},
            ValueError,
            r"`max_size_kb` must be > 0",
        ),
    ],
)
def test_bad_deployment_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Deployment(**kwargs)


def test_bad_tuner_arguments(tmp_path):
    with pytest.raises(TypeError, match=r"`deployment` must be a keras_opt.tuning.Deployment"):
        GridSearch(
            build_dense, objective="val_accuracy", deployment="int8", directory=str(tmp_path)
        )


@pytest.mark.tf_keras_only
def test_trial_models_are_stripped_of_pruning_wrappers_before_export(tmp_path):
    import keras_tuner as kt

    import keras_opt.optimization as kopt

    tuner = GridSearch(build_dense, objective="val_accuracy", directory=str(tmp_path))
    model = build_dense(kt.HyperParameters())
    pruned = kopt.prune(model, target_sparsity=0.5)
    exported = tuner._export_model(pruned)
    assert not any("Prune" in type(layer).__name__ for layer in exported.layers)
    names = [layer.name for layer in exported.layers if "input" not in layer.name]
    assert names == [layer.name for layer in model.layers]
    assert tuner._export_model(model) is model  # plain models are exported as they are


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"runtime_error": "Didn't find op for builtin opcode 'FOO'"}, "LiteRT cannot run"),
        ({"metrics": {}}, "has no measured 'accuracy'"),
        ({"error": "Conversion failed: boom"}, "Conversion failed: boom"),
    ],
)
def test_a_file_that_cannot_be_run_or_scored_makes_the_trial_minus_infinity(
    entry, reason, monkeypatch, caplog, tmp_path
):
    import keras_opt.tflite
    from keras_opt.tflite import ExportResult, VariantResult

    measured = {"file": "float16.tflite", "size_bytes": 2048, "latency_ms": {"p50": 0.1}}
    variant = VariantResult.from_dict({"name": "float16", **measured, **entry})
    manifest = {"variants": [variant.to_dict()], "left_out": []}

    def fake_export(*args, **kwargs):
        return ExportResult(str(tmp_path), manifest, None, None, None)

    monkeypatch.setattr(keras_opt.tflite, "export", fake_export)
    deployment = Deployment(eval_data=([0.0], [0]), variant="float16", isolation="none")
    with caplog.at_level("WARNING", logger="keras_opt.tuning.deployment"):
        metrics = deployment.measure(object(), str(tmp_path))
    assert metrics["deploy_score"] == -math.inf
    assert metrics["tflite_accuracy"] == -math.inf
    assert reason in caplog.text
