"""`TFMOTEngine`: what `keras_opt.optimization` asks of an engine, on TFMOT (tf_keras).

TFMOT's pruning wrapper takes a ``PruningSchedule``; keras_opt gives it
`FitRelativeSchedule`, which carries the user's `PruningPlan` in its config
(so the plan travels with the model, through ``clone_model`` and ``.keras``
files) and is resolved to steps by keras_opt's pruning callback when the
fine-tuning fit starts. Traced before that, it raises a clear error instead
of pruning on a placeholder schedule. keras_opt's tuners add the callback to
every trial by themselves.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule as _ps

from keras_opt import backend
from keras_opt.optimization import _graph, _plan, _weights
from keras_opt.optimization._engine import (
    FEATURES,
    QUANTIZE_LAYERS,
    QUANTIZE_WRAPPERS,
    wrapper_kind,
)


@tf_keras.utils.register_keras_serializable(package="keras_opt")
class FitRelativeSchedule(_ps.PruningSchedule):
    """A TFMOT pruning schedule that carries a keras_opt `PruningPlan`.

    Args:
        plan: Dict. The `PruningPlan` config.
        steps: Dict or None. The resolved `Steps`; None until the fit resolves it.

    Returns:
        A TFMOT ``PruningSchedule``.

    Example:
        >>> FitRelativeSchedule({"schedule": "constant", "target": 0.5}, None)  # doctest: +SKIP
    """

    def __init__(self, plan: dict, steps: dict | None = None, layer_name: str = "") -> None:
        self.plan = _plan.PruningPlan.from_config(plan)
        self.layer_name = layer_name
        self.steps = _plan.Steps(**steps) if steps else None

    @property
    def steps(self) -> _plan.Steps | None:
        """The resolved steps, or None before the fine-tuning fit."""
        return self._steps

    @steps.setter
    def steps(self, steps: _plan.Steps | None) -> None:
        self._steps = steps
        self._inner: Any = None
        if steps is None:
            return
        sparsity = tfmot.sparsity.keras
        if self.plan.schedule == "constant" or self.plan.m_by_n is not None:
            self._inner = sparsity.ConstantSparsity(
                self.plan.target,
                begin_step=steps.begin,
                end_step=steps.end,
                frequency=steps.frequency,
            )
        else:
            self._inner = sparsity.PolynomialDecay(
                initial_sparsity=self.plan.initial,
                final_sparsity=self.plan.target,
                begin_step=steps.begin,
                end_step=steps.end,
                frequency=steps.frequency,
            )

    def __call__(self, step: Any) -> Any:
        if self._inner is None:
            raise _plan.unresolved_error(self.layer_name or "?")
        return self._inner(step)

    def get_config(self) -> dict:
        return {
            "class_name": "keras_opt>FitRelativeSchedule",
            "config": {
                "plan": self.plan.to_config(),
                "steps": self.steps.to_config() if self.steps else None,
                "layer_name": self.layer_name,
            },
        }


class TFMOTEngine:
    """Thin access to the TFMOT pieces keras_opt uses (tf_keras flavor only)."""

    name = "tfmot"

    features = FEATURES

    def __init__(self) -> None:
        self.tfmot: types.ModuleType = tfmot
        # Wrapped (not stripped) models then load with keras_opt imported, as native ones do.
        tf_keras.utils.get_custom_objects().update(_tfmot_custom_objects())

    # Pruning ---------------------------------------------------------------
    def prune_layer(self, layer: Any, plan: _plan.PruningPlan) -> Any:
        steps = None if plan.needs_fit else _plan.resolve(plan, 0, None, None)
        schedule = FitRelativeSchedule(
            plan.to_config(), steps.to_config() if steps else None, layer_name=layer.name
        )
        return self.tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=schedule, sparsity_m_by_n=plan.m_by_n
        )

    def finish_pruned(self, model: Any) -> Any:
        return model

    def pruning_callbacks(self, model: Any, log_dir: str | None) -> list:
        from keras_opt.optimization._tfmot_callbacks import pruning_callbacks

        return pruning_callbacks(model, log_dir)

    def prunable_weights(self, layer) -> list:
        from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

        if isinstance(layer, self.tfmot.sparsity.keras.PrunableLayer):
            return list(layer.get_prunable_weights())
        if not prune_registry.PruneRegistry.supports(layer):
            return []
        return list(prune_registry.PruneRegistry._weight_names(layer))

    def clusterable_weights(self, layer: Any) -> list:
        return list(_weights.main_weights(layer))

    def strip(self, model: Any, keep_quantization: bool) -> Any:
        """Strip TFMOT's pruning, clustering and (unless kept) QAT wrappers."""
        kinds = {wrapper_kind(layer) for layer in _graph.iter_layers(model)}
        out = model
        if "prune" in kinds:
            with model.distribute_strategy.scope():  # masks may be mirrored variables
                for layer in _graph.iter_layers(model):
                    if wrapper_kind(layer) == "prune":
                        layer.pruning_obj.weight_mask_op()
            out = self.strip_pruning(out)
        if "cluster" in kinds:
            out = self.strip_clustering(out)
        if "quantize" in kinds and not keep_quantization:
            return _strip_quantization(out)
        # A fresh copy: TFMOT's strip functions share the unwrapped layers with ``model``.
        with self.quantize_scope():
            return _graph.copy_model(out, lambda layer: layer)

    def strip_pruning(self, model):
        return self.tfmot.sparsity.keras.strip_pruning(model)

    # Clustering ------------------------------------------------------------
    def centroid_init(self, name: str):
        init = self.tfmot.clustering.keras.CentroidInitialization
        return {
            "kmeans++": init.KMEANS_PLUS_PLUS,
            "linear": init.LINEAR,
            "density": init.DENSITY_BASED,
            "random": init.RANDOM,
        }[name]

    def cluster_layer(self, layer, n: int, init: str, per_channel: bool, preserve_sparsity: bool):
        from tensorflow_model_optimization.python.core.clustering.keras import cluster as _cluster

        return _cluster._cluster_weights(
            layer,
            n,
            self.centroid_init(init),
            preserve_sparsity=preserve_sparsity,
            cluster_per_channel=per_channel,
        )

    def strip_clustering(self, model):
        return self.tfmot.clustering.keras.strip_clustering(model)

    # Quantization ----------------------------------------------------------
    def quantize_registry(self):
        from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
            default_8bit_quantize_registry,
        )

        return default_8bit_quantize_registry.Default8BitQuantizeRegistry()

    def annotate_layer(self, layer):
        return self.tfmot.quantization.keras.quantize_annotate_layer(layer)

    def quantize_apply(self, annotated_model, preserve: str | None):
        if preserve is None:
            return self.tfmot.quantization.keras.quantize_apply(annotated_model)
        combine = self.tfmot.experimental.combine
        if preserve == "sparsity":
            scheme = combine.Default8BitPrunePreserveQuantizeScheme()
        else:
            scheme = combine.Default8BitClusterPreserveQuantizeScheme(
                preserve_sparsity=preserve == "both"
            )
        return self.tfmot.quantization.keras.quantize_apply(annotated_model, scheme)

    def unsupported_layers(self, model: Any) -> list:
        """Every layer TFMOT's default 8-bit scheme cannot quantize (nested models inlined)."""

        registry = self.quantize_registry()
        flat = _graph.flatten_nested(model)
        producers = _producers(flat)
        out = []
        for layer in flat.layers:
            parents = producers.get(id(layer), [])
            if not _supported(registry, layer, parents):
                diagnosis = _diagnose(layer, parents)
                if diagnosis is not None:
                    out.append(diagnosis)
        return out

    def quantize(self, flat: Any, chosen: set[str], preserve: str | None) -> Any:
        """Annotate the chosen layers of ``flat`` and apply TFMOT's scheme."""

        def annotate(layer: Any) -> Any:
            return self.annotate_layer(layer) if layer.name in chosen else layer

        annotated = _graph.copy_model(flat, annotate)
        with self.quantize_scope():
            return self.quantize_apply(annotated, preserve)

    def quantize_scope(self):
        return self.tfmot.quantization.keras.quantize_scope()


def _float_copy_of_quantized(wrapper: Any) -> Any:
    inner = wrapper.layer
    config = inner.get_config()
    activation = getattr(inner, "activation", None)
    if activation is not None and "activation" in config:
        while type(activation).__name__ == "QuantizeAwareActivation":
            activation = activation.activation
        if type(activation).__name__ == "NoOpActivation":
            activation = "linear"  # TFMOT's Conv+BatchNorm transform moved it after the BN.
        config["activation"] = backend.keras.activations.serialize(
            backend.keras.activations.get(activation)
        )
    new = type(inner).from_config(config)
    new.build(wrapper.input_shape)
    values = _weights.named_variables(wrapper)
    new.set_weights([np.asarray(values[_weights.short_name(v)].numpy()) for v in new.weights])
    return new


def _strip_quantization(model: Any) -> Any:
    def replace(layer: Any) -> Any:
        kind = type(layer).__name__
        if kind in QUANTIZE_LAYERS:
            return None
        if kind in QUANTIZE_WRAPPERS:
            return _float_copy_of_quantized(layer)
        return _graph.copy_layer(layer)

    return _graph.rebuild(model, replace)


_BN_PRODUCERS = ("Conv2D", "DepthwiseConv2D")
_PREPROCESSING = ("Rescaling", "Normalization", "Resizing", "CenterCrop", "RandomFlip")


def _producers(model: Any) -> dict[int, list[str]]:
    """Map id(layer) to the class names of the layers feeding it, in ``model``'s graph."""
    out: dict[int, list[str]] = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            parents = tf.nest.flatten(node.inbound_layers)
            out.setdefault(id(node.layer), []).extend(type(p).__name__ for p in parents)
    return out


def _diagnose(layer: Any, producers: list[str]) -> Any:
    from keras_opt.optimization.quantization import UnsupportedLayer

    kind = type(layer).__name__
    skip_fix = "or pass skip_unsupported=True to keep it in float."
    if kind == "BatchNormalization":
        if producers and all(p in _BN_PRODUCERS for p in producers):
            return None
        return UnsupportedLayer(
            layer.name,
            kind,
            "TFMOT quantizes BatchNormalization only right after Conv2D/DepthwiseConv2D "
            f"(here after {', '.join(producers) or 'nothing'}).",
            "Fold it into the previous layer or move it after a convolution, " + skip_fix,
        )
    if kind in ("TFOpLambda", "SlicingOpLambda", "Lambda"):
        return UnsupportedLayer(
            layer.name,
            kind,
            "a raw TensorFlow op or Lambda has no quantization recipe in TFMOT.",
            "Replace it with a Keras layer (e.g. keras.layers.Multiply, Add, Rescaling) or "
            "annotate it with a tfmot QuantizeConfig, " + skip_fix,
        )
    if kind in _PREPROCESSING:
        return UnsupportedLayer(
            layer.name,
            kind,
            "preprocessing layers are not in TFMOT's 8-bit registry.",
            "Move the preprocessing into the input pipeline (tf.data), " + skip_fix,
        )
    return UnsupportedLayer(
        layer.name,
        kind,
        "this layer type is not in TFMOT's default 8-bit registry.",
        "Annotate it with a tfmot QuantizeConfig "
        "(tfmot.quantization.keras.quantize_annotate_layer), " + skip_fix,
    )


def _supported(registry: Any, layer: Any, producers: list[str]) -> bool:
    kind = type(layer).__name__
    if kind == "InputLayer" or registry.supports(layer):
        return True
    if kind == "BatchNormalization":
        return _diagnose(layer, producers) is None
    return False


def _tfmot_custom_objects() -> dict[str, Any]:
    from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    return {
        "PruneLowMagnitude": pruning_wrapper.PruneLowMagnitude,
        "ClusterWeights": cluster_wrapper.ClusterWeights,
        "ClusterWeightsRNN": cluster_wrapper.ClusterWeightsRNN,
        "ClusterWeightsMHA": cluster_wrapper.ClusterWeightsMHA,
        "FitRelativeSchedule": FitRelativeSchedule,
    }
