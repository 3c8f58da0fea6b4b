"""Helpers shared by the probing monitors (gradients, activations, NaN guard).

* `as_probe` turns what the user passed as a probe (arrays or a dataset)
  into one fixed batch ``(x, y, sample_weight)``.
* `layer_groups` maps the model's trainable variables to the leaf layers that
  own them (nested models are walked), so norms can be reported per layer.
* `top_layers` lists the model's own layers (what the activation monitor and
  the NaN diagnosis look at).
* `state_variables` lists the variables a probe forward pass may change
  (BatchNorm moving statistics, metric accumulators), so they can be put back.
* `compute_loss` calls the model's compiled loss in either flavor.
* `intermediate_model` builds a model that returns every layer's output.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from keras_opt import _validation as v
from keras_opt._state import unique
from keras_opt.backend import is_tf_keras, keras


def as_probe(data: Any, name: str, *, need_targets: bool) -> tuple[Any, Any, Any]:
    """One fixed batch ``(x, y, sample_weight)`` from arrays or a dataset."""
    if isinstance(data, tf.data.Dataset):
        batch = next(iter(data.take(1)))
        data = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    elif not isinstance(data, (tuple, list)):
        data = (data,)
    if not data or len(data) > 3:
        v.fail(name, "x, (x,), (x, y) or (x, y, sample_weight) or a tf.data.Dataset", data)
    x = data[0]
    y = data[1] if len(data) > 1 else None
    sw = data[2] if len(data) > 2 else None
    if need_targets and y is None:
        v.fail(
            name,
            "(x, y) or (x, y, sample_weight): the loss needs targets",
            type(data).__name__,
            "Pass e.g. `probe=(x_train[:64], y_train[:64])`",
        )
    if x is None or len(tf.nest.flatten(x)) == 0:
        v.fail(name, "a batch with inputs", data)
    return x, y, sw


def top_layers(model: Any) -> list[Any]:
    """The model's own layers in order, without ``InputLayer`` (a nested model is one)."""
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


def leaf_layers(model: Any) -> list[Any]:
    """Leaf layers of ``model`` in order, walking nested models."""
    out: list[Any] = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model):
            out.extend(leaf_layers(layer))
        else:
            out.append(layer)
    return out


def layer_groups(model: Any) -> list[tuple[str, list[int]]]:
    """``[(layer name, indices into model.trainable_variables)]`` in layer order."""
    index = {id(var): i for i, var in enumerate(model.trainable_variables)}
    groups: list[tuple[str, list[int]]] = []
    seen: set[int] = set()
    for layer in leaf_layers(model):
        ids = [index[id(w)] for w in layer.trainable_weights if id(w) in index]
        ids = [i for i in ids if i not in seen]
        if ids:
            seen.update(ids)
            groups.append((layer.name, ids))
    rest = [i for i in range(len(index)) if i not in seen]
    if rest:
        groups.append(("other", rest))
    return groups


def state_variables(model: Any) -> list[Any]:
    """Non-trainable variables and metric accumulators (changed by a training forward)."""
    candidates = list(model.non_trainable_variables)
    for metric in getattr(model, "metrics", []):
        candidates.extend(metric.variables)
    return unique(candidates)


def compute_loss(model: Any, x: Any, y: Any, y_pred: Any, sample_weight: Any) -> Any:
    """The compiled loss (plus regularization losses) in either flavor."""
    y, sample_weight = (
        None if t is None else tf.nest.map_structure(tf.convert_to_tensor, t)
        for t in (y, sample_weight)
    )
    if is_tf_keras():
        return _tf_keras_loss(model, x, y, y_pred, sample_weight)
    return model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)


def _tf_keras_loss(model: Any, x: Any, y: Any, y_pred: Any, sample_weight: Any) -> Any:
    """tf_keras' compiled loss without its metric updates.

    ``compiled_loss(...)`` also updates the running loss metric, a
    sync-on-read variable that cannot be updated outside a replica context
    under ``MirroredStrategy``; this is its loss computation alone.
    """
    from tf_keras.src.engine import compile_utils
    from tf_keras.src.utils import losses_utils

    compiled = getattr(model, "compiled_loss", None)
    if compiled is None or not hasattr(compiled, "_losses"):
        return model.compute_loss(x, y, y_pred, sample_weight)
    y_true = compiled._conform_to_outputs(y_pred, y)
    weights = compiled._conform_to_outputs(y_pred, sample_weight)
    if not compiled._built:
        compiled.build(y_pred)
    values = []
    parts = zip(
        tf.nest.flatten(y_true),
        tf.nest.flatten(y_pred),
        tf.nest.flatten(weights),
        compiled._losses,
        compiled._loss_weights,
        strict=False,
    )
    for y_t, y_p, sw, loss_obj, loss_weight in parts:
        if y_t is None or loss_obj is None:
            continue
        y_t, y_p, sw = compile_utils.match_dtype_and_rank(y_t, y_p, sw)
        sw = losses_utils.apply_mask(y_p, sw, losses_utils.get_mask(y_p))
        value = loss_obj(y_t, y_p, sample_weight=sw)
        values.append(value * loss_weight if loss_weight is not None else value)
    if model.losses:
        values.extend(losses_utils.cast_losses_to_common_dtype(model.losses))
    values = losses_utils.cast_losses_to_common_dtype(values)
    return tf.add_n(values)


def loss_scale(model: Any) -> Any:
    """The loss scale the optimizer uses under mixed precision, else 1.0."""
    optimizer = getattr(model, "optimizer", None)
    for attr in ("dynamic_scale", "loss_scale"):  # Keras 3, tf_keras
        scale = getattr(optimizer, attr, None)
        if scale is not None and not callable(scale):
            return scale
    return 1.0


def intermediate_model(model: Any, layers: list[Any], owner: str) -> Any:
    """A model returning the outputs of ``layers`` for ``model``'s inputs."""
    try:
        inputs = model.inputs
        outputs = [layer.output for layer in layers]
    except (AttributeError, ValueError) as err:
        raise TypeError(
            f"{owner} needs a Sequential or Functional model with known inputs (it reads each "
            f"layer's output); {type(model).__name__} has none ({err}). Build the model with "
            "`keras.Input(...)`."
        ) from None
    if not inputs:
        raise TypeError(
            f"{owner} needs a Sequential or Functional model with known inputs. Build the "
            "model with `keras.Input(...)`."
        )
    if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
        inputs = inputs[0]
    return keras.Model(inputs, outputs)


def run_intermediate(extractor: Any, x: Any, training: bool = True) -> list[Any]:
    """Outputs of an `intermediate_model` as a list (one entry per layer)."""
    out = extractor(x, training=training)
    return list(out) if isinstance(out, (list, tuple)) else [out]
