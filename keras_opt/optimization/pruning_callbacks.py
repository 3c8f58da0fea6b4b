"""The callbacks a compressed model needs in ``fit``: none under Keras 3.

Under Keras 3 keras_opt's native engine runs the pruning schedule inside the
train step, so `callbacks` returns ``[]``. Under tf_keras, TFMOT's pruning
wrapper needs its step callback; `callbacks` returns keras_opt's version of
it, which also fits the schedule to the fit. keras_opt's tuners and
`collaborative` add these by themselves.
"""

from __future__ import annotations

from typing import Any

from keras_opt import _validation, backend
from keras_opt.optimization import _engine

__all__ = ["callbacks"]


def callbacks(model: Any, log_dir: str | None = None) -> list:
    """Return the callbacks ``model``'s compression wrappers need in ``fit``.

    Under Keras 3 (native engine): ``[]``, always. Under tf_keras (TFMOT), for a
    pruned model: TFMOT's UpdatePruningStep, extended to fit the pruning
    schedule to the fit's epochs and steps, and with ``log_dir`` TFMOT's
    PruningSummaries for TensorBoard. Clustered and quantized models need none.

    Args:
        model: The model returned by `prune` (or `cluster`, `quantize`).
        log_dir: String or None. Where PruningSummaries writes sparsity curves
            (tf_keras only; ignored with a list of ``[]`` under Keras 3).

    Returns:
        List of callbacks to add to ``fit(callbacks=...)``.

    Raises:
        TypeError: for a model of the other flavor.
        ValueError: for an empty ``log_dir``.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> pruned.fit(x, y, callbacks=kopt.callbacks(pruned))  # doctest: +SKIP
    """
    backend.check_model(model)
    if log_dir is not None and (not isinstance(log_dir, str) or not log_dir):
        _validation.fail("log_dir", "a non-empty string or None", log_dir)
    return _engine.get_engine("callbacks").pruning_callbacks(model, log_dir)
