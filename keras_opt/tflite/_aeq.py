"""AI Edge Quantizer (AEQ) recipes applied to a float32 ``.tflite`` file.

The converter stops at int8 weights. ``ai-edge-quantizer`` (Google's
quantizer for LiteRT) re-quantizes a float ``.tflite`` from a recipe: int4
weight-only (``weight_only_wi4_afp32``), dynamic int4 (``dynamic_wi4_afp32``),
int8 weights with int16 activations (``static_wi8_ai16``) and more. keras_opt
uses the recipes as they ship (`recipe_names` lists them), gives depthwise kernels int8
weights in the int4 variants (AEQ has no int4 depthwise kernel), and checks
that the result really holds quantized kernels.

Example:
    >>> from keras_opt.tflite._aeq import recipe_names
    >>> "weight_only_wi4_afp32" in recipe_names()
    True
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["recipe_names", "quantize_tflite"]

_RECIPE_PREFIXES = ("dynamic_", "weight_only_", "static_")


def recipe_names() -> list[str]:
    """Names of the AEQ recipes a variant can use (``ai_edge_quantizer.recipe``).

    Returns:
        Sorted list of recipe function names (dynamic, weight-only and static
        recipes; the model-family recipes for LLMs are left out).
    """
    from ai_edge_quantizer import recipe

    return sorted(
        name
        for name in dir(recipe)
        if name.startswith(_RECIPE_PREFIXES) and callable(getattr(recipe, name))
    )


def _calibration_samples(
    float_model: bytes, calibration: Sequence[np.ndarray], input_names: Sequence[str]
) -> dict[str, list[dict[str, np.ndarray]]]:
    """AEQ's calibration data: ``{signature: [{input: batch}, ...]}`` in the file's batch."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_opt.tflite._runtime import signature_inputs

    interp = Interpreter(model_content=float_model)
    signatures = interp.get_signature_list()
    key = next(iter(signatures))
    runner = interp.get_signature_runner(key)
    mapping, fixed = signature_inputs(runner.get_input_details(), input_names)
    step = fixed if fixed > 0 else 1
    n = calibration[0].shape[0] - calibration[0].shape[0] % step
    samples = [
        {
            mapping[name]: arr[i : i + step]
            for name, arr in zip(input_names, calibration, strict=False)
        }
        for i in range(0, n, step)
    ]
    if not samples:
        raise ValueError(
            f"The AEQ calibration needs at least {step} sample(s) (the file's batch size). "
            f"Received {calibration[0].shape[0]}."
        )
    return {key: samples}


def quantize_tflite(
    float_model: bytes,
    recipe_name: str,
    calibration: Sequence[np.ndarray] | None = None,
    input_names: Sequence[str] = (),
    int8_depthwise: bool = False,
) -> bytes:
    """Quantize a float ``.tflite`` with an AEQ recipe and return the new file's bytes.

    Args:
        float_model: Bytes of the float32 ``.tflite`` file.
        recipe_name: String. One of `recipe_names` (e.g. ``"weight_only_wi4_afp32"``).
        calibration: List of arrays (one per model input, batch first), needed
            by static recipes (``static_wi8_ai16``) to calibrate activations.
        input_names: The Keras input names, in ``calibration``'s order.
        int8_depthwise: Boolean. Give DEPTHWISE_CONV_2D kernels 8-bit weights of the
            recipe's kind (weight-only or dynamic). AEQ 0.10 has no int4 depthwise
            kernel, so an int4 recipe alone leaves them in float32 (17 of
            MobileNetV2's 53 kernels).

    Returns:
        Bytes of the quantized flatbuffer.

    Raises:
        ValueError: an unknown recipe, missing calibration data, or a result in
            which AEQ quantized no kernel (the message says which).
    """
    from ai_edge_quantizer import quantizer, recipe

    from keras_opt.tflite._inspection import inspect_tflite

    if recipe_name not in recipe_names():
        raise ValueError(
            f"Unknown AI Edge Quantizer recipe {recipe_name!r}. Known recipes: "
            f"{', '.join(recipe_names())}."
        )
    q = quantizer.Quantizer(bytearray(float_model))
    q.load_quantization_recipe(getattr(recipe, recipe_name)())
    if int8_depthwise:
        from ai_edge_quantizer import qtyping

        add = (
            q.add_dynamic_config if recipe_name.startswith("dynamic_") else q.add_weight_only_config
        )
        add(".*", qtyping.TFLOperationName.DEPTHWISE_CONV_2D, 8)
    result = None
    # AEQ's calibrator draws a progress bar on stderr and warns that it keeps every
    # tensor (it needs them all): keep the caller's terminal and warnings clean.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        if q.need_calibration:
            if calibration is None:
                raise ValueError(
                    f"AEQ recipe {recipe_name!r} calibrates activation ranges: it needs "
                    "representative_data."
                )
            data = _calibration_samples(float_model, calibration, input_names)
            result = q.calibrate(data, num_threads=os.cpu_count() or 1)
        content = bytes(q.quantize(result, enable_progress_report=False).quantized_model)
    kernels: dict[str, Any] = inspect_tflite(content)["kernel_types"]
    if kernels and set(kernels) <= {"FLOAT32", "FLOAT16"}:
        raise ValueError(
            f"AI Edge Quantizer recipe {recipe_name!r} left every kernel in float "
            f"({kernels}): this model has no layer the recipe quantizes (a quantization-aware "
            "model's kernels, for instance, already pass through QUANTIZE/DEQUANTIZE)."
        )
    return content
