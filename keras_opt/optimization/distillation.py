"""Knowledge distillation with ordinary ``compile``/``fit`` (both Keras flavors).

Follows keras.io's "Knowledge Distillation" example (Hinton et al., 2015):
the loss is ``alpha * student_loss + (1 - alpha) * T**2 * KL(teacher_T || student_T)``
where ``*_T`` are the softmax outputs at temperature ``T``. The student loss is
whatever ``loss`` the Distiller is compiled with.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_opt import _validation, backend
from keras_opt.backend import keras

__all__ = ["Distiller"]

_EPS = 1e-7


def _log_probs(outputs: Any, from_logits: bool) -> Any:
    if from_logits:
        return tf.nn.log_softmax(outputs, axis=-1)
    return tf.math.log(tf.clip_by_value(outputs, _EPS, 1.0))


class Distiller(keras.Model):
    """A model that trains ``student`` to match ``teacher`` and the labels.

    Compile it like the student (``loss`` is the student's loss on the labels)
    and ``fit`` it on the labelled data; then use ``distiller.student``. The
    teacher is frozen (``teacher.trainable = False``).

    Args:
        teacher: Trained Keras model of the flavor in use.
        student: Keras model with the same output shape.
        temperature: Float > 0. Softening temperature ``T``.
        alpha: Float in [0, 1]. Weight of the student (label) loss; the
            distillation loss gets ``1 - alpha``.
        from_logits: Boolean. Whether both models output logits; False means
            they output probabilities (softmax), which are turned into
            log-probabilities before softening.

    Example:
        >>> from keras_opt.backend import keras
        >>> from keras_opt.optimization import Distiller
        >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> distiller = Distiller(teacher, student, temperature=4.0, alpha=0.1,
        ...                       from_logits=True)
        >>> distiller.compile(optimizer="adam",
        ...     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> distiller.temperature
        4.0
    """

    def __init__(
        self,
        teacher: Any,
        student: Any,
        temperature: float = 3.0,
        alpha: float = 0.1,
        from_logits: bool = False,
    ) -> None:
        backend.check_model(teacher, "teacher")
        backend.check_model(student, "student")
        temperature = float(_validation.positive("temperature", temperature) or 0.0)
        alpha = float(_validation.in_range("alpha", alpha, 0.0, 1.0) or 0.0)
        if not isinstance(from_logits, bool):
            _validation.fail("from_logits", "a boolean", from_logits, exc=TypeError)
        super().__init__()
        self.teacher = teacher
        self.student = student
        self.teacher.trainable = False
        self.temperature = temperature
        self.alpha = alpha
        self.from_logits = from_logits

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        """Return the student's outputs."""
        return self.student(inputs, training=training)

    def distillation_loss(self, teacher_outputs: Any, student_outputs: Any) -> Any:
        """``T**2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch."""
        t = self.temperature
        teacher_soft = tf.nn.softmax(_log_probs(teacher_outputs, self.from_logits) / t, axis=-1)
        student_log = tf.nn.log_softmax(_log_probs(student_outputs, self.from_logits) / t, axis=-1)
        teacher_log = tf.math.log(tf.clip_by_value(teacher_soft, _EPS, 1.0))
        kl = tf.reduce_sum(teacher_soft * (teacher_log - student_log), axis=-1)
        return tf.reduce_mean(kl) * (t**2)

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        """``alpha * compiled loss + (1 - alpha) * distillation loss``."""
        if backend.is_tf_keras():
            student_loss = super().compute_loss(x, y, y_pred, sample_weight)
        else:
            student_loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        teacher_pred = tf.stop_gradient(self.teacher(x, training=False))
        distill = self.distillation_loss(teacher_pred, y_pred)
        return self.alpha * student_loss + (1.0 - self.alpha) * distill

    def get_config(self) -> dict[str, Any]:
        """Config with the scalar settings (the models are saved separately)."""
        return {
            "temperature": self.temperature,
            "alpha": self.alpha,
            "from_logits": self.from_logits,
        }
