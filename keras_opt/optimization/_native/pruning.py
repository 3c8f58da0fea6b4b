"""`PruneLowMagnitude`: magnitude pruning of a Keras 3 layer, entirely in the train step.

The wrapper owns a step counter and one mask per kernel. In a training call
it checks the schedule (Python constants from its config, so the check is a
single ``cond`` in the graph), recomputes the masks on an update step, counts
the step, and runs the wrapped layer with ``kernel * mask``. Inference calls
apply the masks only. Pruned weights get no gradient, so they stay pruned.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_opt.backend import keras
from keras_opt.optimization import _plan
from keras_opt.optimization._native import kernels
from keras_opt.optimization._native._wrapper import CompressionWrapper

__all__ = ["PruneLowMagnitude"]


def magnitude_mask(magnitude: Any, sparsity: Any) -> Any:
    """A 0/1 mask zeroing the ``sparsity`` fraction of smallest ``magnitude`` entries."""
    flat = ops.reshape(magnitude, (-1,))
    size = int(flat.shape[0])
    zeros = ops.cast(ops.round(ops.cast(sparsity, "float32") * size), "int32")
    zeros = ops.clip(zeros, 0, size - 1)
    ordered = ops.sort(flat)
    threshold = ops.take(ordered, ops.maximum(zeros - 1, 0))
    mask = ops.cast(magnitude > threshold, magnitude.dtype)
    return ops.where(zeros > 0, mask, ops.ones_like(mask))


def m_by_n_mask(magnitude: Any, m: int, n: int, axis: int) -> Any:
    """Exactly ``m`` zeros in every ``n`` consecutive entries along ``axis``."""
    moved = ops.moveaxis(magnitude, axis, -1)
    shape = ops.shape(moved)
    groups = ops.reshape(moved, (-1, n))
    _, keep = ops.top_k(groups, n - m, sorted=False)
    mask = ops.sum(ops.one_hot(keep, n, dtype=magnitude.dtype), axis=-2)
    return ops.moveaxis(ops.reshape(mask, shape), -1, axis)


def _replica_local(name: str, shape: Any, initializer: str, dtype: Any) -> Any:
    """A non-trainable variable each replica updates on its own, inside a ``cond``.

    Every replica computes the same mask from the same (mirrored) weights, so no
    cross-replica sync is needed; a mirrored variable's update would need one,
    which TensorFlow does not allow inside control flow. Reads outside the
    replicas see the first replica's value.
    """
    return keras.Variable(
        initializer,
        shape=shape,
        dtype=dtype,
        trainable=False,
        name=name,
        aggregation="only_first_replica",
        synchronization="on_read",
    )


@keras.saving.register_keras_serializable(package="keras_opt")
class PruneLowMagnitude(CompressionWrapper):
    """Prunes the kernels of the wrapped layer by magnitude while it trains.

    Made by `keras_opt.optimization.prune` under Keras 3; removed by
    `keras_opt.optimization.strip`, which writes ``kernel * mask`` into a plain
    copy of the layer.

    Args:
        layer: A built Keras 3 layer with a kernel (see `kernels.SUPPORTED`).
        plan: Dict. `keras_opt.optimization._plan.PruningPlan` as a config.
        steps: Dict or None. The plan in concrete steps (``_plan.Steps``);
            None until the first fit resolves it.
        **kwargs: Layer arguments (``name``...).

    Returns:
        A Keras layer.

    Example:
        >>> import keras_opt.optimization as kopt  # doctest: +SKIP
        >>> kopt.prune(model, 0.5).get_layer("head")  # doctest: +SKIP
        <PruneLowMagnitude name=head, built=True>
    """

    compression_kind = "prune"

    def __init__(self, layer: Any, plan: dict, steps: dict | None = None, **kwargs: Any) -> None:
        super().__init__(layer, **kwargs)
        self.plan = _plan.PruningPlan.from_config(plan)
        self.steps = _plan.Steps(**steps) if steps else None
        self._kernel_names = kernels.kernel_names(layer)
        if not self._kernel_names:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no weights that can be "
                f"pruned. Prunable layers: {kernels.SUPPORTED}."
            )

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        self._kernels = kernels.kernel_variables(self.layer)
        self.masks = {
            name: _replica_local(f"{name}_mask", var.shape, "ones", var.dtype)
            for name, var in self._kernels.items()
        }
        self.step = _replica_local("pruning_step", (), "zeros", "int64")
        if self.plan.m_by_n is not None:
            m, n = self.plan.m_by_n
            for name, var in self._kernels.items():
                axis = kernels.input_axis(self.layer, name, len(var.shape))
                if var.shape[axis] % n:
                    raise ValueError(
                        f"Layer {self.layer.name!r}: {m}:{n} sparsity groups {n} input channels, "
                        f"but its `{name}` has {var.shape[axis]}. Leave it dense with "
                        f"skip=[{self.layer.name!r}]."
                    )
        self.built = True

    # The schedule ---------------------------------------------------------
    def _sparsity(self, step: Any) -> Any:
        plan, steps = self.plan, self.steps
        if plan.schedule == "constant" or plan.m_by_n is not None or steps is None:
            return ops.convert_to_tensor(plan.target, "float32")
        span = float(max(1, steps.end - steps.begin))
        p = ops.clip(ops.cast(step - steps.begin, "float32") / span, 0.0, 1.0)
        return plan.target + (plan.initial - plan.target) * (1.0 - p) ** 3

    def _is_update_step(self, step: Any) -> Any:
        steps = self.steps
        if steps is None:  # checked in call(); here for the type checker
            raise _plan.unresolved_error(self.layer.name)
        due = ops.logical_and(step >= steps.begin, (step - steps.begin) % steps.frequency == 0)
        if steps.end >= 0:
            due = ops.logical_and(due, step <= steps.end)
        return due

    def _update_masks(self, step: Any) -> None:
        sparsity = self._sparsity(step)
        for name, var in self._kernels.items():
            mask = self.masks[name]
            magnitude = ops.abs(var.value * mask.value)  # pruned weights stay pruned
            if self.plan.m_by_n is not None:
                m, n = self.plan.m_by_n
                axis = kernels.input_axis(self.layer, name, len(var.shape))
                mask.assign(m_by_n_mask(ops.abs(var.value), m, n, axis))
            else:
                mask.assign(magnitude_mask(magnitude, sparsity))

    # Keras hooks ----------------------------------------------------------
    def call(self, inputs: Any, training: Any = None, **kwargs: Any) -> Any:
        if training:
            if self.steps is None:
                raise _plan.unresolved_error(self.layer.name)
            step = self.step.value
            ops.cond(self._is_update_step(step), lambda: self._update_masks(step), lambda: None)
            self.step.assign_add(1)
        mapping = [(var, var.value * self.masks[n].value) for n, var in self._kernels.items()]
        with kernels.substitute(mapping):
            return self.layer(inputs, **kwargs)

    def get_config(self) -> dict:
        config = super().get_config()
        config["plan"] = self.plan.to_config()
        config["steps"] = self.steps.to_config() if self.steps else None
        return config

    def compressed_values(self) -> dict[str, Any]:
        """``{attribute: numpy kernel * mask}``, what `strip` writes into the layer."""
        return {
            name: ops.convert_to_numpy(var.value * self.masks[name].value)
            for name, var in self._kernels.items()
        }
