"""Flavor gate and layer selection (both flavors)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import keras_opt.optimization as kopt
from keras_opt.backend import keras
from keras_opt.optimization.layers import select_layers
from tests.conftest import build_residual_cnn


@pytest.mark.keras3_only
def test_every_compression_function_is_served_natively_under_keras3():
    from keras_opt.optimization import _engine

    for feature in ("prune", "cluster", "strip", "callbacks", "quantize", "check"):
        assert _engine.get_engine(feature).name == "native"
    assert _engine.get_engine("collaborative").name == "native"
    model = build_residual_cnn()
    pruned = kopt.prune(model, target_sparsity=0.5)
    assert kopt.callbacks(pruned) == []
    assert type(kopt.strip(kopt.cluster(model, 8)).get_layer("head")).__name__ == "Dense"


@pytest.mark.tf_keras_only
def test_a_keras3_model_is_refused_under_tf_keras():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    for call in (lambda: kopt.prune(model, 0.5), lambda: kopt.cluster(model, 4)):
        with pytest.raises(TypeError, match="It is a keras3 model"):
            call()


def test_select_layers_by_name_regex_type_and_skip():
    model = build_residual_cnn()
    assert select_layers(model.layers, ["head"]) == {"head"}
    assert select_layers(model.layers, re.compile("res_.*")) == {
        "res_conv",
        "res_bn",
        "res_add",
        "res_relu",
    }
    assert select_layers(model.layers, keras.layers.Conv2D) == {"stem", "res_conv"}
    assert select_layers(model.layers, keras.layers.Conv2D, skip="stem") == {"res_conv"}
    kernels = select_layers(model.layers, eligible=lambda layer: bool(layer.weights))
    assert kernels == {"stem", "stem_bn", "res_conv", "res_bn", "head"}


def test_select_layers_unknown_name_lists_the_model_layers():
    model = build_residual_cnn()
    with pytest.raises(ValueError, match=r"Argument `layers` .* Received: layers='hed'.*stem"):
        select_layers(model.layers, ["hed"])
    with pytest.raises(ValueError, match="Argument `skip`"):
        select_layers(model.layers, skip=re.compile("nothing.*"))
    with pytest.raises(TypeError, match="Argument `layers`"):
        select_layers(model.layers, [3])
    with pytest.raises(ValueError, match="has no weights that can be pruned"):
        select_layers(
            model.layers, ["flatten"], eligible=lambda layer: bool(layer.weights), what="pruned"
        )


def test_summary_reads_sparsity_and_unique_values_in_both_flavors():
    model = build_residual_cnn()
    kernel, bias = model.get_layer("head").get_weights()
    kernel = np.where(np.arange(kernel.size).reshape(kernel.shape) % 4 == 0, 0.5, 0.0)
    model.get_layer("head").set_weights([kernel.astype("float32"), bias])
    report = kopt.compression_summary(model)
    head = report["head"]
    assert head.sparsity == pytest.approx(0.75)
    assert head.unique_values == 2
    assert head.weights == kernel.size
    assert not head.quantized
    assert [row.name for row in report.layers if row.compressible] == ["stem", "res_conv", "head"]
    # Layers without compressible weights are listed too, and stay as they are.
    assert report["stem_bn"].weights == 0
    assert not report["stem_bn"].compressible
    assert "res_add" in [row.name for row in report.layers]
    assert "head" in str(report)
    rows = {row["name"]: row for row in report.to_dict()["layers"]}
    assert rows["head"]["sparsity"] == pytest.approx(0.75)


def test_summary_rejects_non_models():
    with pytest.raises(TypeError, match="Argument `model`"):
        kopt.compression_summary("model.keras")


def test_compression_of_names_what_a_model_carries_in_both_engines():
    model = build_residual_cnn()
    assert kopt.compression_of(model) == frozenset()
    assert kopt.compression_of(kopt.prune(model, 0.5)) == {"prune"}
    assert kopt.compression_of(kopt.cluster(model, 8)) == {"cluster"}
    assert kopt.compression_of(kopt.quantize(model)) == {"quantize"}
    assert kopt.compression_of(kopt.strip(kopt.prune(model, 0.5))) == frozenset()
    with pytest.raises(TypeError, match="Argument `model`"):
        kopt.compression_of("model.keras")


def test_renamed_functions_keep_their_readme_aliases():
    assert kopt.check is kopt.check_quantizable
    assert kopt.summary is kopt.compression_summary
    assert "check" not in kopt.__all__
    assert "summary" not in kopt.__all__
