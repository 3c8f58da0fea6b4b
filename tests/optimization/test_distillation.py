"""Distiller with ordinary compile/fit, in both Keras flavors."""

from __future__ import annotations

import numpy as np
import pytest

from keras_opt.backend import keras
from keras_opt.optimization import Distiller
from tests.conftest import build_residual_cnn, compile_classifier


def _student(seed=1):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_distillation_loss_matches_the_formula():
    distiller = Distiller(_student(0), _student(1), temperature=3.0, alpha=0.2)
    rng = np.random.default_rng(0)
    t = _softmax(rng.normal(size=(5, 10))).astype("float32")
    s = _softmax(rng.normal(size=(5, 10))).astype("float32")
    pt, ps = _softmax(np.log(t) / 3.0), _softmax(np.log(s) / 3.0)
    expected = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=-1)) * 9.0
    got = float(distiller.distillation_loss(t, s))
    assert got == pytest.approx(expected, rel=1e-4)


def test_distiller_trains_the_student_with_plain_compile_and_fit(digits):
    x, y, x_test, y_test = digits
    teacher = compile_classifier(build_residual_cnn())
    teacher.fit(x, y, epochs=3, batch_size=32, verbose=0)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student = _student()
    distiller = Distiller(teacher, student, temperature=4.0, alpha=0.1)
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = distiller.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    predictions = np.argmax(distiller.student.predict(x_test, verbose=0), axis=-1)
    assert float(np.mean(predictions == y_test)) > 0.8
    for before, after in zip(teacher_weights, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)  # the teacher is frozen
    assert distiller.get_config() == {"temperature": 4.0, "alpha": 0.1, "from_logits": False}


def test_alpha_one_is_the_plain_student_loss(digits):
    x, y, _, _ = digits
    student = _student()
    distiller = Distiller(_student(3), student, temperature=2.0, alpha=1.0)
    distiller.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    plain = keras.models.clone_model(student)
    plain.set_weights(student.get_weights())
    plain.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert distiller.evaluate(x[:64], y[:64], verbose=0) == pytest.approx(
        plain.evaluate(x[:64], y[:64], verbose=0), rel=1e-5
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0}, ValueError, r"Argument `temperature` must be > 0. Received: "),
        ({"alpha": 1.5}, ValueError, r"Argument `alpha` must be in \[0.0, 1.0\]"),
        ({"from_logits": "no"}, TypeError, "Argument `from_logits`"),
        ({"teacher": "teacher.keras"}, TypeError, "Argument `teacher`"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    args = {"teacher": _student(0), "student": _student(1), **kwargs}
    with pytest.raises(error, match=match):
        Distiller(**args)
