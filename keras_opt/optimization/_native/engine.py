"""`NativeEngine`: what `keras_opt.optimization` asks of an engine, on Keras 3."""

from __future__ import annotations

from typing import Any

from keras_opt.backend import keras
from keras_opt.optimization import _graph, _plan
from keras_opt.optimization._engine import FEATURES
from keras_opt.optimization._native import kernels, qat_graph
from keras_opt.optimization._native.clustering import ClusterWeights
from keras_opt.optimization._native.model import PrunedModel, pruning_wrappers
from keras_opt.optimization._native.pruning import PruneLowMagnitude
from keras_opt.optimization._native.quantization import QuantizeKernel, QuantizeOutput


class NativeEngine:
    """keras_opt's Keras 3 engine: pruning, clustering and QAT without TFMOT."""

    name = "native"
    features = FEATURES

    # Pruning ---------------------------------------------------------------
    def prunable_weights(self, layer: Any) -> list:
        return list(kernels.kernel_names(layer))

    def prune_layer(self, layer: Any, plan: _plan.PruningPlan) -> Any:
        steps = None if plan.needs_fit else _plan.resolve(plan, 0, None, None)
        wrapper = PruneLowMagnitude(
            layer, plan=plan.to_config(), steps=steps.to_config() if steps else None
        )
        return wrapper

    def finish_pruned(self, model: Any) -> Any:
        return PrunedModel(model.inputs, model.outputs, name=model.name)

    def pruning_callbacks(self, model: Any, log_dir: str | None) -> list:
        return []  # everything runs in the train step

    # Clustering ------------------------------------------------------------
    def clusterable_weights(self, layer: Any) -> list:
        return list(kernels.kernel_names(layer))

    def cluster_layer(
        self, layer: Any, n: int, init: str, per_channel: bool, preserve_sparsity: bool
    ) -> Any:
        wrapper = ClusterWeights(
            layer,
            n,
            init=init,
            per_channel=per_channel,
            preserve_sparsity=preserve_sparsity,
        )
        wrapper.build(layer.get_build_config()["input_shape"])
        wrapper.initialize_centroids()
        return wrapper

    # Quantization-aware training -------------------------------------------
    def unsupported_layers(self, model: Any) -> list:
        flat = qat_graph.inline_nested(model)
        return [d for d in map(qat_graph.diagnose, flat.operations) if d is not None]

    def quantize(self, model: Any, chosen: set[str], preserve: str | None) -> Any:
        return qat_graph.build_qat_model(model, chosen, preserve)

    # Strip -----------------------------------------------------------------
    def strip(self, model: Any, keep_quantization: bool = False) -> Any:
        def replace(layer: Any) -> Any:
            kind = getattr(type(layer), "compression_kind", None)
            if kind is None or (kind == "quantize" and keep_quantization):
                return _graph.copy_layer(layer)
            if isinstance(layer, QuantizeOutput):
                return _graph.copy_layer(layer.layer)
            values = layer.compressed_values()
            inner = layer.layer
            if isinstance(layer, QuantizeKernel):  # give the layer its activation back
                config = inner.get_config()
                config["activation"] = layer.activation
                plain = type(inner).from_config(config)
                plain.build_from_config(inner.get_build_config())
                plain.set_weights(inner.get_weights())
            else:
                plain = _graph.copy_layer(inner)
            for name, var in kernels.kernel_variables(plain).items():
                var.assign(values[name])
            return plain

        stripped = _graph.rebuild(model, replace)
        if isinstance(stripped, PrunedModel):
            return keras.Model(stripped.inputs, stripped.outputs, name=stripped.name)
        return stripped

    def has_unresolved(self, model: Any) -> bool:
        return any(layer.steps is None for layer in pruning_wrappers(model))
