"""Remove every compression wrapper, for export and saving."""

from __future__ import annotations

from typing import Any

from keras_opt import _validation, backend
from keras_opt.optimization import _engine, _graph

__all__ = ["strip"]


def strip(model: Any, *, keep_quantization: bool = False) -> Any:
    """Return a plain Keras model without pruning, clustering or QAT wrappers.

    Pruning masks are applied and clustered weights written into the kernels
    first, so the stripped weights are sparse / shared. QAT wrappers are removed
    too (TFMOT has no strip for QAT, model-optimization #958): the result is a
    float model with the fine-tuned weights. To export the int8 model QAT
    trained, convert the QAT model itself, or pass ``keep_quantization=True``.
    The result saves to ``.keras`` and loads back without custom objects.

    Both flavors: under Keras 3 the native wrappers are replaced by plain
    copies of the layers they wrap (built-in Keras layers only, so the result
    loads without keras_opt); under tf_keras TFMOT's strip functions run.

    Args:
        model: A model from `prune`, `cluster`, `quantize` or a chain of them
            (or a plain model, which is returned as a copy).
        keep_quantization: Boolean. Leave the QAT wrappers in place.

    Returns:
        A new model of the flavor in use.

    Raises:
        TypeError: if ``model`` is not a graph model of the flavor in use.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> small = kopt.strip(pruned)  # doctest: +SKIP
        >>> small.save("small.keras")  # doctest: +SKIP
    """
    engine = _engine.get_engine("strip")
    backend.check_model(model)
    _graph.require_graph_model(model)
    if not isinstance(keep_quantization, bool):
        _validation.fail("keep_quantization", "a boolean", keep_quantization, exc=TypeError)
    return engine.strip(model, keep_quantization)
