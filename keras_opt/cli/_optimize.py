"""``keras-opt optimize``: compress your own trained model and export it to measured TFLite.

MODEL is a trained ``.keras`` file (safe mode unless --unsafe); DATA is an
``.npz`` with arrays named after the model inputs (or ``x``) and labels ``y``.
The model is fine-tuned with the chosen recipe (pruning, clustering, QAT or
their collaborative chains, one-cycle LR per stage), and both the baseline and
the compressed model are exported to TFLite variants under OUT/baseline and
OUT/<recipe>, each with report.md and manifest.json; OUT/<recipe> also holds
the stripped model as a .keras file.

MODEL loads in the Keras flavor that saved it: a Keras 3 file is compressed
by keras_opt's native engine, a tf_keras file (TF_USE_LEGACY_KERAS=1) by TFMOT.
Custom layers load once their module is imported: pass --import MODULE (the
module that registers them with keras.saving.register_keras_serializable, on
PYTHONPATH or in the current folder). TensorFlow and converter output goes to
OUT/optimize.log.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Any

from keras_opt.cli._quiet import quiet_tensorflow

RECIPES = ("none", "prune", "cluster", "qat", "pqat", "cqat", "pcqat")


def register(sub: Any) -> None:
    """Add the ``optimize`` sub-command to ``sub`` (an argparse sub-parsers object)."""
    p = sub.add_parser(
        "optimize",
        help="fine-tune a .keras model with a compression recipe and export it to TFLite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="trained .keras file")
    p.add_argument("--data", required=True, metavar="DATA", help=".npz training data (x, y)")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-data", metavar="VAL", help=".npz validation data (x, y)")
    val.add_argument(
        "--val-split", type=float, default=0.1, help="fraction of DATA held out (default 0.1)"
    )
    p.add_argument(
        "--recipe",
        choices=RECIPES,
        default="pcqat",
        help="compression recipe: " + ", ".join(RECIPES) + " (default pcqat)",
    )
    p.add_argument("--target-sparsity", type=float, default=0.5, help="pruning (default 0.5)")
    p.add_argument("--clusters", type=int, default=16, help="values per kernel (default 16)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs per stage (default 2)")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")
    p.add_argument("--lr", type=float, default=1e-3, help="one-cycle peak LR (default 1e-3)")
    p.add_argument("--loss", default=None, help="loss (default: the model's, else inferred)")
    p.add_argument(
        "--variants",
        default="float32,dynamic_int8,int8",
        help="comma-separated TFLite variants (default float32,dynamic_int8,int8)",
    )
    p.add_argument("--out", default=None, help="output folder (default tflite_models/<model>)")
    p.add_argument("--search", type=int, default=0, metavar="N", help="KerasTuner trials (0: off)")
    p.add_argument(
        "--isolation",
        choices=("variant", "export", "none"),
        default="export",
        help="variant: a process per conversion; export: one for all (default); none: in-process",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE before loading MODEL, e.g. the module that registers your custom "
        "layers (repeatable; found on PYTHONPATH or in the current folder)",
    )
    p.add_argument(
        "--unsafe",
        action="store_true",
        help="allow Lambda layers / arbitrary code in MODEL (only for files you trust)",
    )
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    from keras_opt.cli import CLIError

    checks = [
        ("--epochs", args.epochs, args.epochs >= 1, ">= 1"),
        ("--batch-size", args.batch_size, args.batch_size >= 1, ">= 1"),
        ("--val-split", args.val_split, 0 < args.val_split < 1, "in (0, 1)"),
        ("--target-sparsity", args.target_sparsity, 0 <= args.target_sparsity < 1, "in [0, 1)"),
        ("--clusters", args.clusters, args.clusters >= 2, ">= 2"),
        ("--lr", args.lr, args.lr > 0, "> 0"),
        ("--search", args.search, args.search >= 0, ">= 0"),
    ]
    for flag, value, ok, rule in checks:
        if not ok:
            raise CLIError(f"{flag} must be {rule}. Received: {value}")
    if args.search and args.recipe == "none":
        raise CLIError("--search tunes a compression recipe: pass --recipe (e.g. --recipe prune).")
    for flag, path in (("MODEL", args.model), ("--data", args.data), ("--val-data", args.val_data)):
        if path is not None and not os.path.exists(path):
            raise CLIError(f"{flag} {path!r} does not exist.")


def _choose_flavor(args: argparse.Namespace) -> str | None:
    """Pick the flavor that saved MODEL, before TensorFlow loads; returns it (None: unknown).

    In a process that already imported TensorFlow the flavor is fixed: `load` then
    refuses a file of the other flavor with one message.
    """
    from keras_opt.cli import CLIError
    from keras_opt.cli._keras_file import saved_flavor

    if not (args.model.endswith(".keras") or os.path.isfile(args.model)):
        return None  # a SavedModel folder: the flavor in use loads it
    saved = saved_flavor(args.model)
    if saved is None:
        raise CLIError(
            f"MODEL {args.model!r} is not a Keras model: a .keras file is a zip archive "
            "holding config.json (save one with `model.save('model.keras')`)."
        )
    if "tensorflow" not in sys.modules and "keras_opt.backend" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1" if saved == "tf_keras" else "0"
    return saved


def _import_modules(names: list[str]) -> None:
    """Import the ``--import`` modules (custom layers register themselves on import)."""
    from keras_opt.cli import CLIError

    if names and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # as `python -m keras_opt` would see it
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - the user's code may raise anything
            missing = getattr(err, "name", None) if isinstance(err, ModuleNotFoundError) else None
            hint = ""
            if missing is not None and (name + ".").startswith(missing + "."):  # not a dependency
                hint = (
                    " Pass a module name (`my_layers` for my_layers.py) whose folder is on "
                    "PYTHONPATH or is the current folder."
                )
            first = (str(err).splitlines() or [""])[0][:300].rstrip(".")
            raise CLIError(
                f"--import {name!r} failed: {type(err).__name__}: {first}.{hint}"
            ) from None


def run(args: argparse.Namespace) -> int:
    """Run ``keras-opt optimize``; returns the exit status."""
    from keras_opt.cli import CLIError

    _check_args(args)
    saved = _choose_flavor(args)
    quiet_tensorflow()
    _import_modules(args.imports)
    name = os.path.splitext(os.path.basename(os.path.normpath(args.model)))[0]
    out = args.out or os.path.join("tflite_models", name)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create the output folder {out!r}: {err.strerror}") from None
    if not os.access(out, os.W_OK):
        raise CLIError(f"the output folder {out!r} is not writable.")
    log = os.path.join(out, "optimize.log")
    term = os.fdopen(os.dup(2), "w")
    try:
        from keras_opt.cli import _optimize_steps as steps

        return steps.optimize(args, name, out, log, saved, term)
    except CLIError:
        raise
    except Exception as err:  # noqa: BLE001 - one readable line, the traceback in the log
        with open(log, "a") as f:
            traceback.print_exc(file=f)
        print(f"keras-opt optimize: failed: {type(err).__name__}: {err} (details: {log})")
        return 1
    finally:
        term.close()
