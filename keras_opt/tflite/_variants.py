"""The TFLite variants keras_opt can export, and how each one sets the converter.

Each `Variant` is a named recipe for ``tf.lite.TFLiteConverter``:

==============  =============================================================
name            what it is
==============  =============================================================
float32         no optimization; the reference artifact
float16         weights stored as float16 (``supported_types=[tf.float16]``)
dynamic_int8    dynamic-range quantization: int8 weights, float activations
int8            full integer quantization with float fallback (float I/O)
int8_only       integer-only ops, int8 (or uint8) input and output (MCUs)
int16x8         int16 activations x int8 weights (better accuracy than int8)
int4_weights    AI Edge Quantizer weight-only int4 (``weight_only_wi4_afp32``;
                depthwise kernels int8: AEQ has no int4 depthwise kernel)
dynamic_int4    AI Edge Quantizer dynamic int4 (``dynamic_wi4_afp32``, same)
int8_int16act   AI Edge Quantizer int8 weights, int16 activations (``static_wi8_ai16``)
mixed           full int8 with the fewest layers kept in float to stay within an
                accuracy budget (ranked by the QuantizationDebugger)
aeq:<recipe>    any other AI Edge Quantizer recipe by name (``aeq:static_wi8_ai8``)
==============  =============================================================

The first six come from ``tf.lite.TFLiteConverter`` and are the default. The
AI Edge Quantizer (AEQ) variants quantize the float32 ``.tflite`` file of the
same model with an AEQ recipe; ``mixed`` needs labeled ``eval_data``.

Example:
    >>> from keras_opt.tflite._variants import VARIANTS, resolve_variants
    >>> [v.name for v in resolve_variants(["float32", "int8"])]
    ['float32', 'int8']
    >>> VARIANTS["int8"].needs_representative_data
    True
    >>> VARIANTS["int4_weights"].engine, VARIANTS["int4_weights"].recipe
    ('aeq', 'weight_only_wi4_afp32')
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

__all__ = ["Variant", "VARIANTS", "DEFAULT_VARIANTS", "AEQ_PREFIX", "resolve_variants"]

#: Prefix of a variant named after an AI Edge Quantizer recipe (``aeq:static_wi8_ai8``).
AEQ_PREFIX = "aeq:"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One conversion recipe.

    Attributes:
        name: String. Variant name, also the file stem (``<name>.tflite``).
        description: String. One line for reports.
        optimize: Boolean. Whether ``tf.lite.Optimize.DEFAULT`` is set.
        needs_representative_data: Boolean. True for full-integer variants:
            activations need calibration ranges (unless the model is QAT).
        float16_weights: Boolean. ``supported_types=[tf.float16]``.
        ops_set: String or None. Name of the ``tf.lite.OpsSet`` member
            restricting the ops (None keeps the converter default).
        integer_io: Boolean. Input and output tensors are int8/uint8.
        engine: String. ``"converter"`` (``tf.lite.TFLiteConverter``), ``"aeq"``
            (an AI Edge Quantizer recipe applied to the float32 ``.tflite``) or
            ``"mixed"`` (int8 with layers kept in float; see `export`'s
            ``mixed_budget``).
        recipe: String or None. The AEQ recipe function (``ai_edge_quantizer.recipe``).

    Example:
        >>> from keras_opt.tflite import VARIANTS
        >>> VARIANTS["int8"].needs_representative_data, VARIANTS["int4_weights"].engine
        (True, 'aeq')
    """

    name: str
    description: str
    optimize: bool = False
    needs_representative_data: bool = False
    float16_weights: bool = False
    ops_set: str | None = None
    integer_io: bool = False
    engine: str = "converter"
    recipe: str | None = None

    @property
    def file_stem(self) -> str:
        """String. The ``.tflite`` file name without suffix (``aeq:x`` -> ``aeq_x``)."""
        return self.name.replace(":", "_")

    def converter_settings(self, *, select_tf_ops: bool, io_dtype: str, qat: bool) -> dict:
        """Return the converter settings this variant uses, as plain data.

        Args:
            select_tf_ops: Boolean. Add ``SELECT_TF_OPS`` (Flex) to the ops.
            io_dtype: String. ``"int8"`` or ``"uint8"``, for ``integer_io``.
            qat: Boolean. The model carries trained quantization ranges, so it is
                not calibrated.

        Returns:
            Dict with ``optimizations``, ``supported_ops``, ``supported_types``,
            ``inference_input_type``, ``inference_output_type``, ``calibrated``.
        """
        ops = [self.ops_set or "TFLITE_BUILTINS"]
        # TF 2.21 checks int8-only / integer-I/O requests before it has looked at the graph,
        # so a QAT model (no representative data) is converted with its trained ranges and
        # builtin ops, then its I/O tensors are rewritten to integers.
        if self.engine == "aeq":
            return {
                "engine": "aeq",
                "recipe": self.recipe,
                # AEQ 0.10 has no int4 depthwise kernel: the named int4 variants give
                # depthwise convs int8 weights instead of leaving them in float32.
                "int8_depthwise": self.name in ("int4_weights", "dynamic_int4"),
                "source": "float32 .tflite of the same model and batch size",
                "supported_ops": ["TFLITE_BUILTINS"],
                "calibrated": self.needs_representative_data,
            }
        io_rewrite = qat and self.integer_io
        if io_rewrite:
            ops = ["TFLITE_BUILTINS"]
        if select_tf_ops:
            ops.append("SELECT_TF_OPS")
        # A QAT graph's float32 conversion uses its trained ranges too: without
        # Optimize.DEFAULT TF 2.21 leaves per-channel fake quant (native Dense kernels) as
        # float arithmetic run on every inference, a slower and larger file.
        optimize = self.optimize or qat
        return {
            "optimizations": ["DEFAULT"] if optimize else [],
            "supported_ops": ops,
            "supported_types": ["float16"] if self.float16_weights else [],
            "inference_input_type": io_dtype if self.integer_io else "float32",
            "inference_output_type": io_dtype if self.integer_io else "float32",
            "calibrated": self.needs_representative_data and not qat,
            "qat_ranges": optimize and qat,
            "io_rewrite": io_rewrite,
            "engine": self.engine,
        }

    def configure(self, converter: Any, settings: dict, representative_dataset: Any) -> None:
        """Apply ``settings`` (from `converter_settings`) to a TFLiteConverter."""
        import tensorflow as tf

        if settings["optimizations"]:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [
            getattr(tf.lite.OpsSet, name) for name in settings["supported_ops"]
        ]
        if settings["supported_types"]:
            converter.target_spec.supported_types = [tf.float16]
        if self.integer_io and not settings.get("io_rewrite"):
            dtype = tf.uint8 if settings["inference_input_type"] == "uint8" else tf.int8
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
        if settings["calibrated"]:
            converter.representative_dataset = representative_dataset


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("float32", "float32, no optimization (reference)"),
        Variant("float16", "float16 weights", optimize=True, float16_weights=True),
        Variant("dynamic_int8", "dynamic-range: int8 weights, float activations", optimize=True),
        Variant(
            "int8",
            "full int8 with float fallback, float I/O",
            optimize=True,
            needs_representative_data=True,
        ),
        Variant(
            "int8_only",
            "integer-only ops, int8/uint8 I/O (microcontrollers)",
            optimize=True,
            needs_representative_data=True,
            ops_set="TFLITE_BUILTINS_INT8",
            integer_io=True,
        ),
        Variant(
            "int16x8",
            "int16 activations x int8 weights",
            optimize=True,
            needs_representative_data=True,
            ops_set="EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",
        ),
        Variant(
            "int4_weights",
            "AEQ weight-only int4 kernels, float activations",
            engine="aeq",
            recipe="weight_only_wi4_afp32",
        ),
        Variant(
            "dynamic_int4",
            "AEQ dynamic int4: int4 kernels, activations quantized at run time",
            engine="aeq",
            recipe="dynamic_wi4_afp32",
        ),
        Variant(
            "int8_int16act",
            "AEQ static int8 weights x int16 activations (int16 I/O)",
            needs_representative_data=True,
            engine="aeq",
            recipe="static_wi8_ai16",
        ),
        Variant(
            "mixed",
            "full int8, the fewest high-error layers kept in float (accuracy budget)",
            optimize=True,
            needs_representative_data=True,
            engine="mixed",
        ),
    )
}
"""Every variant keras_opt knows by name (``aeq:<recipe>`` names any other AEQ recipe)."""

DEFAULT_VARIANTS: tuple[str, ...] = (
    "float32",
    "float16",
    "dynamic_int8",
    "int8",
    "int8_only",
    "int16x8",
)
"""The variants `export` converts when none are named: the converter's six."""


def _aeq_variant(key: str, raw: str, argument: str, names: object) -> Variant:
    """The `Variant` of ``aeq:<recipe>``; an unknown recipe gets the known ones listed."""
    from keras_opt.tflite._aeq import recipe_names

    recipe = key[len(AEQ_PREFIX) :]
    known = recipe_names()
    if recipe not in known:
        close = difflib.get_close_matches(recipe, known, n=1)
        hint = f" Did you mean {AEQ_PREFIX + close[0]!r}?" if close else ""
        raise ValueError(
            f"Argument `{argument}` names an unknown AI Edge Quantizer recipe {raw!r}. Known "
            f"recipes: {', '.join(known)} (write them as aeq:<recipe>).{hint} "
            f"Received: {argument}={names!r}"
        )
    return Variant(
        AEQ_PREFIX + recipe,
        f"AEQ recipe {recipe}",
        needs_representative_data=recipe.startswith("static_"),
        engine="aeq",
        recipe=recipe,
    )


def resolve_variants(
    names: str | Iterable[str] | None, argument: str = "variants"
) -> list[Variant]:
    """Turn variant names into `Variant` objects, rejecting unknown names.

    Args:
        names: None (`DEFAULT_VARIANTS`), a comma-separated string or an iterable
            of names. Hyphens and case are forgiven (``"Dynamic-Int8"``);
            ``"aeq:<recipe>"`` names an AI Edge Quantizer recipe.
        argument: String. The argument name used in error messages.

    Returns:
        List of `Variant`, in the order given, without duplicates.

    Raises:
        ValueError: for an unknown name (with the closest known name) or an
            empty selection.
        TypeError: if ``names`` is not a string or an iterable of strings.

    Example:
        >>> [v.name for v in resolve_variants("float16,dynamic-int8")]
        ['float16', 'dynamic_int8']
    """
    if names is None:
        return [VARIANTS[n] for n in DEFAULT_VARIANTS]
    if isinstance(names, str):
        items = [n for n in names.split(",")]
    else:
        try:
            items = list(names)
        except TypeError:
            raise TypeError(
                f"Argument `{argument}` must be a list of variant names or a comma-separated "
                f"string. Received: {argument}={names!r}"
            ) from None
    out: list[Variant] = []
    for raw in items:
        if not isinstance(raw, str):
            raise TypeError(
                f"Argument `{argument}` must contain strings. Received: {argument}={names!r}"
            )
        key = raw.strip().lower().replace("-", "_")
        if key.startswith(AEQ_PREFIX):
            variant = _aeq_variant(key, raw, argument, names)
            if variant not in out:
                out.append(variant)
            continue
        if key not in VARIANTS:
            close = difflib.get_close_matches(key, list(VARIANTS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"Argument `{argument}` contains an unknown variant {raw!r}. Known variants: "
                f"{', '.join(VARIANTS)}, or aeq:<recipe> for an AI Edge Quantizer recipe.{hint} "
                f"Received: {argument}={names!r}"
            )
        if VARIANTS[key] not in out:
            out.append(VARIANTS[key])
    if not out:
        raise ValueError(
            f"Argument `{argument}` must name at least one variant ({', '.join(VARIANTS)}). "
            f"Received: {argument}={names!r}"
        )
    return out
