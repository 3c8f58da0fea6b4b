"""The base class of keras_opt callbacks."""

from __future__ import annotations

from typing import Any

from keras_opt.backend import check_model, keras


class Callback(keras.callbacks.Callback):
    """A Keras callback of the flavor in use that refuses models of the other flavor.

    Passing a keras_opt callback to the other flavor's ``fit`` (a tf_keras model
    while keras_opt runs Keras 3, or the reverse) otherwise fails deep inside
    Keras (``no attribute '_implements_train_batch_hooks'``); ``set_model`` is
    the first hook both flavors call, so the clear error is raised there.

    Batch logs stay tensors (``_supports_tf_logs``, read by tf_keras only):
    tf_keras otherwise turns every batch's logs into NumPy for any callback
    with a batch hook, ~0.1 ms a step on the digits CNN even for a hook that
    ignores them (Keras 3 converts them anyway). keras_opt's batch hooks read
    what they need with `read_float`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._supports_tf_logs = True  # tf_keras' Callback.__init__ sets it to False

    def set_model(self, model: Any) -> None:
        check_model(model, "model")
        super().set_model(model)
