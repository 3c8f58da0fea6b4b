"""`check_gradients`: autodiff against central finite differences, per variable, in float64.

Anchors: ``torch.autograd.gradcheck`` (float64, ``eps=1e-6``, ``atol=1e-5``,
``rtol=1e-3``, "fast mode" by random projections) and
``tf.test.compute_gradient`` (Jacobians of a single function of its inputs).
Here the subject is a whole Keras layer or model and the check is per
trainable variable (and optionally per input).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from keras_opt import _validation as v
from keras_opt.backend import keras

__all__ = ["VariableCheck", "GradientCheckReport", "check_gradients"]

FAST_MODES = ("auto", True, False)


@dataclasses.dataclass
class VariableCheck:
    """The check of one variable (or input).

    Attributes:
        name: String. Variable path (or ``input:i``).
        shape: Tuple of ints.
        mode: String. ``"exact"`` (every element) or ``"projection"``.
        checked: Integer. Elements (exact) or random directions (projection).
        max_abs_error: Float. Largest ``|autodiff - finite difference|``.
        max_rel_error: Float. Largest error relative to ``max(|a|, |n|)``
            (0 where both are below ``atol``).
        passed: Boolean. Every error within ``atol + rtol * |n|``.
    """

    name: str
    shape: tuple[int, ...]
    mode: str
    checked: int
    max_abs_error: float
    max_rel_error: float
    passed: bool


@dataclasses.dataclass
class GradientCheckReport:
    """What `check_gradients` found.

    Attributes:
        variables: List of `VariableCheck`, in the layer's variable order.
        atol: Float. Absolute tolerance used.
        rtol: Float. Relative tolerance used.
        epsilon: Float. Finite-difference step.

    Example:
        >>> r = GradientCheckReport([VariableCheck("w", (2,), "exact", 2, 0.0, 0.0, True)],
        ...                         1e-5, 1e-3, 1e-6)
        >>> r.passed, r.failures
        (True, [])
    """

    variables: list[VariableCheck]
    atol: float
    rtol: float
    epsilon: float

    @property
    def passed(self) -> bool:
        """Boolean. Every variable passed."""
        return all(c.passed for c in self.variables)

    @property
    def failures(self) -> list[str]:
        """List of names of the variables that failed."""
        return [c.name for c in self.variables if not c.passed]

    @property
    def max_abs_error(self) -> float:
        """Float. Largest absolute error over all variables."""
        return max((c.max_abs_error for c in self.variables), default=0.0)

    @property
    def max_rel_error(self) -> float:
        """Float. Largest relative error over all variables."""
        return max((c.max_rel_error for c in self.variables), default=0.0)

    def __str__(self) -> str:
        lines = [f"{'variable':40s} {'mode':10s} {'n':>5s} {'max abs':>10s} {'max rel':>10s}  ok"]
        for c in self.variables:
            lines.append(
                f"{c.name[:40]:40s} {c.mode:10s} {c.checked:5d} {c.max_abs_error:10.2e} "
                f"{c.max_rel_error:10.2e}  {'yes' if c.passed else 'NO'}"
            )
        lines.append("passed" if self.passed else f"FAILED: {', '.join(self.failures)}")
        return "\n".join(lines)


def _float64_copy(subject: Any, inputs: Any) -> Any:
    def clone_layer(layer: Any) -> Any:
        config = dict(layer.get_config())
        config["dtype"] = "float64"
        try:
            return layer.__class__.from_config(config)
        except Exception as err:  # noqa: BLE001 - any failure means the same fix
            raise TypeError(
                f"check_gradients could not rebuild layer `{layer.name}` "
                f"({type(layer).__name__}) in float64 from its config ({err}). Make its "
                "`get_config()` return every constructor argument so that `from_config` works."
            ) from None

    if isinstance(subject, keras.Model):
        if not subject.built:
            subject(inputs)
        copy = keras.models.clone_model(subject, clone_function=clone_layer)
    else:
        if not subject.built:
            subject(inputs)
        copy = clone_layer(subject)
    copy(tf.nest.map_structure(lambda t: tf.cast(t, tf.float64), inputs))
    copy.set_weights([np.asarray(w, dtype=np.float64) for w in subject.get_weights()])
    return copy


def _name(variable: Any) -> str:
    name = getattr(variable, "path", None) or variable.name
    return name[:-2] if name.endswith(":0") else name


def check_gradients(
    model_or_layer: Any,
    inputs: Any,
    *,
    targets: Any = None,
    loss: Any = None,
    training: bool = False,
    wrt_inputs: bool = False,
    epsilon: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    fast_mode: bool | str = "auto",
    max_elements: int = 1000,
    num_projections: int = 16,
    seed: int = 0,
) -> GradientCheckReport:
    """Compare autodiff gradients with central finite differences, per variable.

    The layer or model is rebuilt in float64 from its config (the original is
    not touched) and its weights are copied. The checked scalar is
    ``loss(targets, f(inputs))`` when both are given, otherwise
    ``sum(r * f(inputs))`` with a fixed random ``r`` (a random projection of
    the outputs, which checks a random vector-Jacobian product). For each
    variable the gradient from ``tf.GradientTape`` is compared with
    ``(L(w + eps e) - L(w - eps e)) / (2 eps)`` element by element, or, in
    fast mode, along ``num_projections`` random unit directions ``u``
    (``<grad, u>`` against the finite difference along ``u``). Fast mode is
    used for variables with more than ``max_elements`` elements when
    ``fast_mode="auto"``.

    Non-smooth points (ReLU at 0, max-pooling ties) can fail legitimately;
    with ``training=True`` the layer must be deterministic (no dropout).

    Args:
        model_or_layer: A Keras layer or model of the flavor in use, whose
            ``get_config`` round-trips through ``from_config``.
        inputs: Array, tensor or structure of them: one batch.
        targets: Optional targets for ``loss``.
        loss: Optional loss (name or callable ``(y_true, y_pred)``).
        training: Boolean. Call with ``training=True`` (e.g. BatchNorm batch
            statistics).
        wrt_inputs: Boolean. Also check gradients with respect to the inputs.
        epsilon: Float > 0. Finite-difference step.
        atol: Float >= 0. Absolute tolerance.
        rtol: Float >= 0. Relative tolerance.
        fast_mode: ``"auto"``, True or False. See above.
        max_elements: Integer >= 1. Threshold for ``fast_mode="auto"``.
        num_projections: Integer >= 1. Directions per variable in fast mode.
        seed: Integer. Seed of ``r`` and of the directions.

    Returns:
        `GradientCheckReport`; ``report.passed`` is the verdict and
        ``str(report)`` a table.

    Raises:
        TypeError: if ``model_or_layer`` is not a Keras layer of the flavor in
            use or cannot be rebuilt in float64.
        ValueError: on bad arguments, or a layer without trainable variables
            (and ``wrt_inputs=False``).

    Example:
        >>> import numpy as np
        >>> from keras_opt.backend import keras
        >>> from keras_opt.diagnostics import check_gradients
        >>> layer = keras.layers.Dense(3, activation="tanh")
        >>> report = check_gradients(layer, np.random.rand(4, 5))
        >>> report.passed, len(report.variables)
        (True, 2)
    """
    if not isinstance(model_or_layer, keras.layers.Layer):
        v.fail(
            "model_or_layer",
            "a Keras layer or model of the flavor in use",
            type(model_or_layer).__name__,
            exc=TypeError,
        )
    if inputs is None:
        v.fail("inputs", "an array, tensor or structure of them", inputs, exc=TypeError)
    v.positive("epsilon", epsilon)
    v.non_negative("atol", atol)
    v.non_negative("rtol", rtol)
    if fast_mode not in FAST_MODES or not isinstance(fast_mode, (bool, str)):
        v.fail("fast_mode", "one of 'auto', True, False", fast_mode)
    v.integer("max_elements", max_elements, minimum=1)
    v.integer("num_projections", num_projections, minimum=1)
    v.integer("seed", seed)
    if (loss is None) != (targets is None):
        v.fail("loss", "given together with `targets` (or neither)", loss)
    loss_fn = keras.losses.get(loss) if loss is not None else None

    x64 = tf.nest.map_structure(lambda t: tf.constant(np.asarray(t), tf.float64), inputs)
    copy = _float64_copy(model_or_layer, inputs)
    variables = list(copy.trainable_variables)
    names = [_name(w) for w in model_or_layer.trainable_weights]
    if len(names) != len(variables):
        names = [_name(w) for w in variables]
    if not variables and not wrt_inputs:
        v.fail(
            "model_or_layer",
            "a layer with trainable variables (or pass wrt_inputs=True)",
            model_or_layer.name,
        )
    rng = np.random.default_rng(seed)
    y_true = None if targets is None else tf.constant(np.asarray(targets))
    flat_out = tf.nest.flatten(copy(x64, training=training))
    weights = [tf.constant(rng.standard_normal(o.shape), tf.float64) for o in flat_out]

    def objective(x: Any) -> Any:
        out = copy(x, training=training)
        if loss_fn is not None:
            return tf.cast(tf.reduce_mean(loss_fn(y_true, out)), tf.float64)
        return tf.add_n(
            [
                tf.reduce_sum(tf.cast(o, tf.float64) * r)
                for o, r in zip(tf.nest.flatten(out), weights, strict=False)
            ]
        )

    compiled = tf.function(objective)

    def value(x: Any) -> float:
        return float(compiled(x).numpy())

    x_flat = tf.nest.flatten(x64)
    with tf.GradientTape(persistent=False) as tape:
        tape.watch(x_flat)
        total = objective(tf.nest.pack_sequence_as(x64, x_flat))
    grads = tape.gradient(total, [*variables, *x_flat])
    settings = (epsilon, atol, rtol, fast_mode, max_elements, num_projections)
    checks = []
    for name, var, g in zip(names, variables, grads[: len(variables)], strict=False):
        checks.append(_check_variable(name, var, g, lambda: value(x64), rng, settings))
    if wrt_inputs:
        for i, (t, g) in enumerate(zip(x_flat, grads[len(variables) :], strict=False)):
            holder = tf.Variable(t)
            rebuilt = tf.nest.pack_sequence_as(
                x64, [holder if j == i else u for j, u in enumerate(x_flat)]
            )
            checks.append(
                _check_variable(f"input:{i}", holder, g, lambda r=rebuilt: value(r), rng, settings)
            )
    return GradientCheckReport(checks, float(atol), float(rtol), float(epsilon))


def _check_variable(
    name: str, var: Any, grad: Any, evaluate: Any, rng: Any, settings: tuple
) -> VariableCheck:
    epsilon, atol, rtol, fast_mode, max_elements, num_projections = settings
    w0 = np.array(var.numpy(), dtype=np.float64)
    analytic_full = (
        np.zeros_like(w0) if grad is None else np.asarray(tf.convert_to_tensor(grad), np.float64)
    )
    size = w0.size
    fast = fast_mode is True or (fast_mode == "auto" and size > max_elements)
    if fast:
        directions = rng.standard_normal((num_projections, size))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    else:
        directions = None
    numeric, analytic = [], []
    try:
        count = num_projections if fast else size
        for k in range(count):
            if directions is not None:
                step = directions[k].reshape(w0.shape) * epsilon
            else:
                step = np.zeros(size)
                step[k] = epsilon
                step = step.reshape(w0.shape)
            var.assign(w0 + step)
            plus = evaluate()
            var.assign(w0 - step)
            minus = evaluate()
            numeric.append((plus - minus) / (2 * epsilon))
            analytic.append(
                float(np.sum(analytic_full * directions[k].reshape(w0.shape)))
                if directions is not None
                else float(analytic_full.reshape(-1)[k])
            )
    finally:
        var.assign(w0)
    a = np.asarray(analytic)
    n = np.asarray(numeric)
    abs_err = np.abs(a - n)
    scale = np.maximum(np.abs(a), np.abs(n))
    rel = np.where(scale > atol, abs_err / np.where(scale > 0, scale, 1.0), 0.0)
    finite = bool(np.all(np.isfinite(a)) and np.all(np.isfinite(n)))
    passed = finite and bool(np.all(abs_err <= atol + rtol * np.abs(n)))
    return VariableCheck(
        name=name,
        shape=tuple(int(d) for d in w0.shape),
        mode="projection" if fast else "exact",
        checked=len(a),
        max_abs_error=float(abs_err.max()) if abs_err.size else 0.0,
        max_rel_error=float(rel.max()) if rel.size else 0.0,
        passed=passed if abs_err.size else True,
    )
