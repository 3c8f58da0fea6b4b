"""A keras_opt callback given a model of the other Keras flavor fails clearly."""

from __future__ import annotations

import numpy as np
import pytest

from keras_opt import backend
from keras_opt.callbacks import LRScheduler, TrainingMonitor, find_lr
from keras_opt.schedules import OneCycle
from tests.conftest import build_sequential_cnn, compile_classifier


def _other_flavor_model():
    if backend.is_tf_keras():
        import keras as other
    else:
        import tf_keras as other
    model = other.Sequential([other.Input((4,)), other.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


@pytest.mark.parametrize(
    "callback", [LRScheduler(OneCycle(1e-2)), TrainingMonitor()], ids=["LRScheduler", "monitor"]
)
def test_callback_refuses_a_model_of_the_other_flavor(callback):
    model = _other_flavor_model()
    other = "keras3" if backend.is_tf_keras() else "tf_keras"
    with pytest.raises(TypeError, match=rf"It is a {other} model, but keras_opt is running with"):
        model.fit(np.zeros((8, 4)), np.zeros((8, 2)), epochs=1, verbose=0, callbacks=[callback])


def test_find_lr_names_mismatched_lengths(digits):
    x, y, _, _ = digits
    model = compile_classifier(build_sequential_cnn())
    with pytest.raises(ValueError, match=r"`y` must be as long as `x` \(1400 samples\)"):
        find_lr(model, x, y[:10], num_steps=10)
