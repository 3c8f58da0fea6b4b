"""analyze_errors on a classifier trained on real digits."""

from __future__ import annotations

import numpy as np
import pytest

from keras_opt.backend import keras
from keras_opt.diagnostics import analyze_errors
from tests.conftest import build_sequential_cnn, compile_classifier


@pytest.fixture(scope="module")
def trained(digits):
    x, y, x_test, y_test = digits
    model = compile_classifier(build_sequential_cnn())
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    return model, x_test, y_test


def test_report_matches_formulas(trained, tmp_path):
    model, x, y = trained
    names = [f"digit{i}" for i in range(10)]
    report = analyze_errors(model, x, y, class_names=names, top_k=5, plot=tmp_path / "cm.png")
    probs = model.predict(x, verbose=0)
    pred = probs.argmax(1)
    cm = np.zeros((10, 10), int)
    for t, p in zip(y, pred, strict=False):
        cm[t, p] += 1
    np.testing.assert_array_equal(report.confusion, cm)
    accuracy = model.evaluate(x, y, verbose=0)[1]
    assert report.accuracy == pytest.approx(accuracy, abs=1e-6)
    assert report.accuracy > 0.5
    tp = np.diag(cm)
    np.testing.assert_allclose(report.recall, tp / cm.sum(1))
    np.testing.assert_allclose(
        report.precision, np.where(cm.sum(0), tp / np.maximum(cm.sum(0), 1), 0)
    )
    p, r = report.precision, report.recall
    np.testing.assert_allclose(
        report.f1, np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0)
    )
    # Per-example cross-entropy and the highest-loss indices.
    ce = keras.losses.sparse_categorical_crossentropy(y, probs).numpy()
    np.testing.assert_allclose(report.losses, ce, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(report.top_losses, np.argsort(-report.losses, kind="stable")[:5])
    # Most-confused pairs are the largest off-diagonal cells.
    off = cm - np.diag(tp)
    for true, predicted, count in report.most_confused:
        assert off[names.index(true), names.index(predicted)] == count
    assert report.most_confused[0][2] == off.max()
    with open(tmp_path / "cm.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_logits_and_one_hot_give_the_same_report(trained):
    model, x, y = trained
    head = model.layers[-1]
    linear = keras.layers.Dense(10, name="linear_head")
    features = keras.Model(model.inputs[0], model.layers[-2].output)
    outputs = linear(features.output)
    logits_model = keras.Model(model.inputs[0], outputs)
    linear.set_weights(head.get_weights())
    a = analyze_errors(model, x, y)
    b = analyze_errors(logits_model, x, np.eye(10)[y])
    np.testing.assert_array_equal(a.confusion, b.confusion)
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "m"}, TypeError, "Argument `model` must be"),
        ({"top_k": 0}, ValueError, "Argument `top_k` must be >= 1"),
        ({"class_names": ["a", "b"]}, ValueError, "Argument `class_names` must be a list of 10"),
        ({"y": np.arange(3)}, ValueError, "Argument `y` must be as long as the predictions"),
        ({"y": np.full(397, 12)}, ValueError, "Argument `y` must be labels in"),
        ({"from_logits": "yes"}, TypeError, "Argument `from_logits` must be a bool"),
    ],
)
def test_bad_arguments(trained, kwargs, error, match):
    model, x, y = trained
    kwargs = {"model": model, "x": x, "y": y, **kwargs}
    with pytest.raises(error, match=match):
        analyze_errors(**kwargs)
