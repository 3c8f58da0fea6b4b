"""``keras-opt convert``: a saved Keras model becomes a folder of measured TFLite variants.

MODEL is a ``.keras`` file (loaded in safe mode unless --unsafe) or a SavedModel
folder. DATA files are ``.npz`` with arrays named after the model inputs, or
``x`` (and ``y`` for labels). Converter and TensorFlow output goes to
``<out>/convert.log``; the terminal shows a progress bar and the final table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import TYPE_CHECKING, Any

from keras_opt.cli._quiet import quiet_tensorflow, redirect_fds

if TYPE_CHECKING:
    from keras_opt.tflite import VariantResult


def register(sub: Any) -> None:
    """Add the ``convert`` sub-command to ``sub`` (an argparse sub-parsers object)."""
    p = sub.add_parser(
        "convert",
        help="convert a Keras model to measured TFLite variants",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help=".keras file or SavedModel folder")
    p.add_argument("--calibration", metavar="DATA", help=".npz representative data (int8 variants)")
    p.add_argument("--eval", metavar="DATA", dest="eval_data", help=".npz eval data (x, y)")
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated: float32,float16,dynamic_int8,int8,int8_only,int16x8 (the "
        "default), int4_weights,dynamic_int4,int8_int16act (AI Edge Quantizer), mixed (int8 "
        "with the fewest layers in float to stay within --mixed-budget; needs --eval), or "
        "aeq:RECIPE for any AI Edge Quantizer recipe",
    )
    p.add_argument("--out", default=None, help="output folder (default tflite_models/<model>)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per variant (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="warmup runs per variant (default 5)")
    p.add_argument(
        "--batch-size",
        default="auto",
        metavar="N|auto|dynamic",
        help="batch axis of the .tflite inputs: auto (default: 1 for recurrent models, else "
        "dynamic, with a batch-1 retry if a dynamic conversion fails), dynamic, or N (1 is "
        "what a phone runs)",
    )
    p.add_argument(
        "--accuracy-budget",
        type=float,
        default=0.01,
        metavar="DELTA",
        help="the recommendation keeps variants whose metric is at most DELTA below the "
        "Keras model's (default 0.01: one point of accuracy)",
    )
    p.add_argument(
        "--mixed-budget",
        type=float,
        default=0.005,
        metavar="DELTA",
        help="the mixed variant stays at most DELTA below the Keras model's metric on --eval "
        "(default 0.005: half a point of accuracy)",
    )
    p.add_argument("--select-tf-ops", action="store_true", help="allow TF ops (Flex delegate)")
    p.add_argument("--int8-io", choices=("int8", "uint8"), default="int8", help="int8_only I/O")
    p.add_argument(
        "--isolation",
        choices=("variant", "export", "none"),
        default="variant",
        help="a process per conversion (default), one for all, or in-process",
    )
    p.add_argument("--quant-debug", action="store_true", help="per-layer int8 error report")
    p.add_argument("--denylist", default=None, help="comma-separated layers kept float in int8")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--safe-mode",
        dest="unsafe",
        action="store_false",
        help="refuse Lambda layers and unsafe deserialization (default)",
    )
    mode.add_argument(
        "--unsafe",
        dest="unsafe",
        action="store_true",
        help="allow Lambda layers / arbitrary code in MODEL (only for files you trust)",
    )
    p.set_defaults(func=run, unsafe=False)


def _load_savedmodel_keras3(keras: Any, path: str) -> Any:
    import tensorflow as tf

    sig = tf.saved_model.load(path).signatures["serving_default"]
    specs = sig.structured_input_signature[1]
    inputs = {
        name: keras.Input(tuple(spec.shape)[1:], dtype=spec.dtype.name, name=name)
        for name, spec in specs.items()
    }
    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    out = layer(inputs if len(inputs) > 1 else next(iter(inputs.values())))
    if isinstance(out, dict):
        out = [out[k] for k in sorted(out)]
    name = os.path.basename(os.path.normpath(path)) or "model"
    return keras.Model(list(inputs.values()), out, name=name)


def check_model_path(path: str) -> None:
    """Refuse a MODEL that is missing, of the wrong kind, or a corrupt ``.keras``/``.h5`` file.

    Runs before anything is created on disk and without TensorFlow.

    Args:
        path: String. The MODEL argument.

    Raises:
        CLIError: naming the file, what is wrong and the fix.
    """
    from keras_opt.cli import CLIError
    from keras_opt.cli._keras_file import keras_file_problem

    if not os.path.exists(path):
        raise CLIError(f"MODEL {path!r} does not exist.")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise CLIError(
                f"MODEL {path!r} is a folder without saved_model.pb: not a SavedModel. Pass a "
                ".keras file or the folder written by model.export(...) / tf.saved_model.save."
            )
        return
    if not path.endswith((".keras", ".h5")):
        raise CLIError(f"MODEL must be a .keras file or a SavedModel folder. Received: {path!r}")
    problem = keras_file_problem(path)
    if problem:
        raise CLIError(
            f"MODEL {path!r} is not a readable Keras model file: {problem}. It may be "
            "truncated or damaged in a copy: save the model again with "
            "model.save('model.keras') or copy the file again."
        )


def load_model(path: str, unsafe: bool) -> Any:
    """Load MODEL (``.keras`` file or SavedModel folder), safe mode unless ``unsafe``.

    Args:
        path: String. A ``.keras``/``.h5`` file or a SavedModel folder.
        unsafe: Boolean. Allow Lambda layers and arbitrary code.

    Returns:
        A Keras model of the flavor in use.

    Raises:
        CLIError: for a missing, corrupt or unloadable MODEL (the message names it).
    """
    from keras_opt.backend import is_tf_keras, keras
    from keras_opt.cli import CLIError

    check_model_path(path)
    is_savedmodel = os.path.isdir(path)
    try:
        if is_savedmodel and not is_tf_keras():
            return _load_savedmodel_keras3(keras, path)
        if is_savedmodel:
            return keras.models.load_model(path, compile=False)
        return keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as err:
        if "safe_mode" in str(err) or "unsafe" in str(err).lower() or "lambda" in str(err).lower():
            raise CLIError(
                f"{path!r} holds a Lambda layer or other code that safe mode refuses to run. "
                "If you trust the file, pass --unsafe."
            ) from None
        raise CLIError(f"could not load {path!r}: {str(err).splitlines()[0]}") from None
    except (OSError, TypeError) as err:
        raise CLIError(f"could not load {path!r}: {str(err).splitlines()[0]}") from None


def _flags(message: str) -> str:
    from keras_opt.cli import as_flags

    message = as_flags(message, FLAGS)
    return message.replace("--calibration x_train[:200]", "--calibration cal.npz")


#: Library argument -> this command's flag, for error messages.
FLAGS = {
    "representative_data": "--calibration",
    "eval_data": "--eval",
    "variants": "--variants",
    "out_dir": "--out",
    "threads": "--threads",
    "runs": "--runs",
    "warmup": "--warmup",
    "batch_size": "--batch-size",
    "accuracy_budget": "--accuracy-budget",
    "mixed_budget": "--mixed-budget",
    "select_tf_ops": "--select-tf-ops",
}


def run(args: argparse.Namespace) -> int:
    """Run ``keras-opt convert``; returns the exit status."""
    from keras_opt.cli import CLIError

    # Check what can be checked before anything is created on disk.
    check_model_path(args.model)
    if args.threads < 1 or args.runs < 1:
        raise CLIError(f"--threads and --runs must be >= 1. Received: {args.threads}, {args.runs}")
    if args.warmup < 0:
        raise CLIError(f"--warmup must be >= 0. Received: {args.warmup}")
    args.batch_size = parse_batch_size(args.batch_size)
    if not args.accuracy_budget >= 0:
        raise CLIError(f"--accuracy-budget must be >= 0. Received: {args.accuracy_budget}")
    for flag, value in (("--calibration", args.calibration), ("--eval", args.eval_data)):
        if value is not None and not os.path.isfile(value):
            raise CLIError(f"{flag} {value!r} is not a file (expected an .npz).")
    quiet_tensorflow()
    out = args.out or os.path.join(
        "tflite_models", os.path.splitext(os.path.basename(os.path.normpath(args.model)))[0]
    )
    created = _missing_dirs(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create the output folder {out!r}: {err.strerror}") from None
    log = os.path.join(out, "convert.log")
    if not os.access(out, os.W_OK):
        raise CLIError(f"the output folder {out!r} is not writable.")
    had_log = os.path.exists(log)
    term = os.fdopen(os.dup(2), "w")
    try:
        return _run(args, out, log, term)
    except CLIError:
        # A user error, raised before any variant is written: leave nothing behind (no
        # convert.log, no folders this run created).
        if not had_log and os.path.exists(log):
            os.remove(log)
        for folder in created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty
        raise
    finally:
        term.close()


def _missing_dirs(path: str) -> list[str]:
    """The folders ``os.makedirs(path)`` would create, deepest first."""
    missing = []
    path = os.path.abspath(path)
    while path and not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def parse_batch_size(value: str) -> int | str | None:
    """``--batch-size``: ``"auto"``, ``"dynamic"`` (None) or an integer >= 1.

    Args:
        value: String from the command line.

    Returns:
        ``"auto"``, None or a positive integer.

    Raises:
        CLIError: for anything else.

    Example:
        >>> parse_batch_size("1"), parse_batch_size("dynamic"), parse_batch_size("auto")
        (1, None, 'auto')
    """
    from keras_opt.cli import CLIError

    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("dynamic", "none"):
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise CLIError(
        f"--batch-size must be auto, dynamic or an integer >= 1 (1 is what a phone runs). "
        f"Received: {value!r}"
    )


def _run(args: argparse.Namespace, out: str, log: str, term: Any) -> int:
    from keras_opt.cli import CLIError

    print(f"keras-opt convert: {args.model} -> {out}/ (log: {log})", flush=True)
    with redirect_fds(log):
        from keras_opt.tflite import export
        from keras_opt.tflite._data import input_specs, load_npz
        from keras_opt.tflite._variants import resolve_variants

        try:
            chosen = [v.name for v in resolve_variants(args.variants, argument="--variants")]
        except (ValueError, TypeError) as err:
            raise CLIError(_flags(str(err))) from None
        model = load_model(args.model, args.unsafe)
        specs = input_specs(model)
        try:
            calibration = load_npz(args.calibration, specs)[0] if args.calibration else None
            eval_data = None
            if args.eval_data:
                x, y = load_npz(args.eval_data, specs)
                eval_data = (x, y) if y is not None else x
        except ValueError as err:
            raise CLIError(_flags(str(err))) from None

        from tqdm.auto import tqdm

        bar = tqdm(total=len(chosen), desc="variants", unit="variant", file=term, disable=None)

        def step(entry: VariantResult) -> None:
            bar.set_postfix_str(entry.name + (" FAILED" if entry.error else ""))
            bar.update(1)

        try:
            result = export(
                model,
                out,
                representative_data=calibration,
                eval_data=eval_data,
                variants=chosen,
                threads=args.threads,
                runs=args.runs,
                warmup=args.warmup,
                batch_size=args.batch_size,
                accuracy_budget=args.accuracy_budget,
                select_tf_ops=args.select_tf_ops,
                int8_io_dtype=args.int8_io,
                isolation=args.isolation,
                quant_debug=args.quant_debug,
                denylist=args.denylist.split(",") if args.denylist else None,
                mixed_budget=args.mixed_budget,
                log_path=log,
                on_variant=step,
            )
        except (ValueError, TypeError) as err:
            raise CLIError(_flags(str(err))) from None
        finally:
            bar.close()
    print(result.format_recommendation())
    print()
    print(result.format_table())
    for name, error in result.failed.items():
        print(f"  {name} failed: {error}")
    for name, reason in result.left_out.items():
        print(f"  {name} {reason}")
    print(f"manifest: {result.manifest_path}\nreport:   {result.report_path}")
    return 1 if result.failed else 0
