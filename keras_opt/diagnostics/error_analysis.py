"""`analyze_errors`: where a trained classifier goes wrong.

Anchor: fastai's ``ClassificationInterpretation`` (confusion matrix,
``most_confused``, ``top_losses``). Metrics come from scikit-learn.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from keras_opt import _validation as v
from keras_opt._plotting import new_figure, save_figure
from keras_opt.backend import check_model

__all__ = ["ErrorReport", "analyze_errors"]


@dataclasses.dataclass
class ErrorReport:
    """Error analysis of a classifier on one labelled set.

    Attributes:
        confusion: Integer array (classes x classes); rows are true classes,
            columns predicted ones.
        class_names: List of strings.
        precision: Float array, per class.
        recall: Float array, per class.
        f1: Float array, per class.
        support: Integer array, examples per true class.
        accuracy: Float.
        most_confused: List of ``(true name, predicted name, count)``,
            largest off-diagonal counts first.
        top_losses: Integer array. Indices of the highest-loss examples,
            highest first.
        losses: Float array. Cross-entropy of every example.
        predictions: Integer array. Predicted class of every example.

    Example:
        >>> import numpy as np
        >>> r = ErrorReport(np.eye(2, dtype=int), ["a", "b"], np.ones(2), np.ones(2),
        ...                 np.ones(2), np.ones(2, int), 1.0, [], np.array([0]),
        ...                 np.zeros(2), np.array([0, 1]))
        >>> r.accuracy
        1.0
    """

    confusion: np.ndarray
    class_names: list[str]
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    accuracy: float
    most_confused: list[tuple[str, str, int]]
    top_losses: np.ndarray
    losses: np.ndarray
    predictions: np.ndarray

    def plot_confusion(self, path: str | os.PathLike, normalize: bool = False) -> str:
        """Save the confusion matrix as a PNG.

        Args:
            path: String or path of the PNG.
            normalize: Boolean. Show row-normalized rates (recall per cell).

        Returns:
            The path written, as a string.
        """
        matrix = self.confusion.astype(np.float64)
        if normalize:
            matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        n = len(self.class_names)
        fig = new_figure((1 + 0.6 * n, 1 + 0.6 * n))
        ax = fig.subplots()
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(n), self.class_names, rotation=90)
        ax.set_yticks(range(n), self.class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        high = matrix.max() if matrix.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{matrix[i, j]:.2f}" if normalize else str(int(matrix[i, j]))
                color = "white" if matrix[i, j] > high / 2 else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
        ax.set_title(f"accuracy {self.accuracy:.3f}")
        fig.tight_layout()
        return save_figure(fig, path)


def _probabilities(outputs: np.ndarray, from_logits: bool | None) -> np.ndarray:
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim == 1 or out.shape[-1] == 1:
        p = out.reshape(-1)
        if from_logits or (from_logits is None and (p.min() < 0 or p.max() > 1)):
            p = 1.0 / (1.0 + np.exp(-p))
        return np.stack([1 - p, p], axis=1)
    looks_like_probs = out.min() >= 0 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
    if from_logits or (from_logits is None and not looks_like_probs):
        out = out - out.max(axis=1, keepdims=True)
        out = np.exp(out)
        out /= out.sum(axis=1, keepdims=True)
    return out


def analyze_errors(
    model: Any,
    x: Any,
    y: Any,
    *,
    class_names: list[str] | None = None,
    batch_size: int = 256,
    top_k: int = 10,
    from_logits: bool | None = None,
    plot: str | os.PathLike | None = None,
) -> ErrorReport:
    """Confusion matrix, per-class precision/recall/F1, confusions and hardest examples.

    Args:
        model: Trained Keras classifier of the flavor in use. Outputs are
            softmax probabilities or logits (``(n, classes)``), or one sigmoid
            probability or logit (``(n, 1)``, binary).
        x: Inputs accepted by ``model.predict``.
        y: Integer labels ``(n,)`` or one-hot ``(n, classes)``.
        class_names: Optional list of names, one per class.
        batch_size: Integer >= 1. Prediction batch size.
        top_k: Integer >= 1. How many highest-loss indices and confused pairs.
        from_logits: Optional boolean. None guesses from the outputs (values
            outside [0, 1] or rows not summing to 1 mean logits).
        plot: Optional path. Where to save the confusion matrix PNG.

    Returns:
        `ErrorReport`.

    Raises:
        TypeError: if ``model`` is not a Keras model of the flavor in use.
        ValueError: on bad arguments or mismatched lengths.

    Example:
        >>> import numpy as np
        >>> from keras_opt.backend import keras
        >>> from keras_opt.diagnostics import analyze_errors
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "softmax")])
        >>> x = np.random.rand(30, 4).astype("float32"); y = np.arange(30) % 3
        >>> report = analyze_errors(model, x, y, top_k=5)
        >>> report.confusion.shape, int(report.confusion.sum()), len(report.top_losses)
        ((3, 3), 30, 5)
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    check_model(model)
    v.integer("batch_size", batch_size, minimum=1)
    v.integer("top_k", top_k, minimum=1)
    if from_logits is not None and not isinstance(from_logits, bool):
        v.fail("from_logits", "a bool or None", from_logits, exc=TypeError)
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1).astype(np.int64)
    probs = _probabilities(model.predict(x, batch_size=batch_size, verbose=0), from_logits)
    if len(probs) != len(labels):
        v.fail("y", f"as long as the predictions ({len(probs)})", f"length {len(labels)}")
    n_classes = probs.shape[1]
    if labels.min() < 0 or labels.max() >= n_classes:
        v.fail("y", f"labels in [0, {n_classes - 1}]", f"[{labels.min()}, {labels.max()}]")
    names = [str(i) for i in range(n_classes)] if class_names is None else list(class_names)
    if len(names) != n_classes:
        v.fail("class_names", f"a list of {n_classes} names", class_names)
    predictions = probs.argmax(axis=1)
    classes = list(range(n_classes))
    confusion = confusion_matrix(labels, predictions, labels=classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=0
    )
    losses = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    pairs = [(i, j, int(off[i, j])) for i in classes for j in classes if off[i, j] > 0]
    pairs.sort(key=lambda t: (-t[2], t[0], t[1]))
    report = ErrorReport(
        confusion=confusion,
        class_names=names,
        precision=np.asarray(precision),
        recall=np.asarray(recall),
        f1=np.asarray(f1),
        support=np.asarray(support),
        accuracy=float(np.mean(predictions == labels)),
        most_confused=[(names[i], names[j], c) for i, j, c in pairs[:top_k]],
        top_losses=np.argsort(-losses, kind="stable")[:top_k],
        losses=losses,
        predictions=predictions,
    )
    if plot is not None:
        report.plot_confusion(plot)
    return report
