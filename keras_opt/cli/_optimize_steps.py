"""The steps of ``keras-opt optimize``, run once the Keras flavor is chosen.

Load and check, fine-tune with the recipe through
`keras_opt.optimization.collaborative` (one-cycle LR and a progress bar as its
callbacks; optionally searched with KerasTuner), export baseline and
compressed models, print the table.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_opt.cli import CLIError
from keras_opt.cli._quiet import redirect_fds

if TYPE_CHECKING:
    from keras_opt.tflite import VariantResult

#: The CLI's recipe names -> `keras_opt.optimization.collaborative` recipes.
COLLABORATIVE_RECIPE = {
    "prune": "prune",
    "cluster": "cluster",
    "qat": "quantize",
    "pqat": "pqat",
    "cqat": "cqat",
    "pcqat": "pcqat",
}


def stages(recipe: str) -> tuple[str, ...]:
    """The stages of a CLI recipe, in order (``()`` for ``none``)."""
    from keras_opt.optimization._collaborative import stages_of

    return () if recipe == "none" else stages_of(COLLABORATIVE_RECIPE[recipe])


def _unregistered_classes(path: str) -> list[str]:
    """Classes MODEL's config names that are neither built in nor registered in this process."""
    from keras_opt.backend import keras
    from keras_opt.cli._keras_file import model_config

    lookup = keras.saving.get_registered_object
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            module, registered = value.get("module"), value.get("registered_name")
            if (
                isinstance(value.get("class_name"), str)
                and isinstance(registered, str)
                and not str(module or "keras").startswith(("keras", "tf_keras", "builtins"))
                and lookup(registered) is None
                and value["class_name"] not in found
            ):
                found.append(value["class_name"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(model_config(path))
    return found


def load(path: str, unsafe: bool, saved: str | None) -> Any:
    """Load MODEL with the flavor that saved it (`optimize.run` chose it before TF loaded)."""
    from keras_opt.backend import flavor
    from keras_opt.cli._convert import load_model

    if saved is not None and saved != flavor():
        wrote = "Keras 3" if saved == "keras3" else "tf_keras (Keras 2)"
        raise CLIError(
            f"{path!r} was saved by {wrote}, which the {flavor()} flavor this process already "
            "runs cannot load. Run keras-opt in a fresh process: it picks the file's flavor."
        )
    try:
        return load_model(path, unsafe)
    except CLIError:
        unknown = _unregistered_classes(path) if saved is not None else []
        if not unknown:
            raise
        names = ", ".join(repr(n) for n in unknown)
        raise CLIError(
            f"could not load {path!r}: it uses the custom class {names}, which no imported "
            "module registers. Pass --import MODULE for the module that defines it with "
            "@keras.saving.register_keras_serializable() (on PYTHONPATH or in the current folder)."
        ) from None


def load_data(path: str, specs: list, flag: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Read an ``.npz`` and check it against the model inputs; labels are required."""
    from keras_opt.tflite._data import collect_inputs, load_npz

    try:
        x, y = load_npz(path, specs)
        xs, y = collect_inputs(x if y is None else (x, y), specs, argument=flag)
    except (ValueError, TypeError) as err:
        raise CLIError(f"{flag} {path!r}: {err}") from None
    if y is None:
        raise CLIError(
            f"{flag} {path!r} holds no labels: add an array `y` "
            "(np.savez(path, x=x, y=y)); fine-tuning and accuracy need them."
        )
    if len(y) != len(xs[0]):
        raise CLIError(f"{flag} {path!r}: {len(xs[0])} inputs but {len(y)} labels `y`.")
    return xs, y


def pick_loss(args: argparse.Namespace, model: Any, y: np.ndarray) -> str:
    """--loss, else the loss saved with MODEL, else one inferred from labels and outputs."""
    from keras_opt.cli._keras_file import compile_config

    loss = args.loss or compile_config(args.model).get("loss")
    if isinstance(loss, str):
        return loss
    units = int(model.outputs[0].shape[-1] or 0)
    if y.dtype.kind in "iub" and units > 1:
        return "sparse_categorical_crossentropy"
    if units == 1 and set(np.unique(y).tolist()) <= {0, 1}:
        return "binary_crossentropy"
    raise CLIError("cannot infer the loss from MODEL and DATA: pass --loss (e.g. --loss mse).")


class _Progress:
    """Shared state of the per-stage progress callbacks: the bar, the stage, the last val_accuracy.

    `collaborative` deep-copies the callbacks for every stage; each copy shares this.
    """

    def __init__(self, stages: tuple[str, ...], bar: Any) -> None:
        self.stages, self.bar = stages, bar
        self.stage = -1
        self.val_accuracy = float("nan")


def _progress_callback(state: _Progress) -> Any:
    from keras_opt.backend import keras

    class Progress(keras.callbacks.Callback):
        """Moves the bar one step per epoch and records ``val_accuracy``."""

        def __deepcopy__(self, memo: dict) -> Any:
            return Progress()  # a fresh callback on the same shared state (the bar is not copied)

        def on_train_begin(self, logs: Any = None) -> None:
            state.stage += 1

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            state.val_accuracy = float((logs or {}).get("val_accuracy", float("nan")))
            if state.bar is not None:
                stage = state.stages[min(state.stage, len(state.stages) - 1)]
                state.bar.set_postfix_str(f"{stage} val_acc={state.val_accuracy:.3f}")
                state.bar.update(1)

    return Progress()


class Compressor:
    """Fine-tunes one model with a recipe, through `keras_opt.optimization.collaborative`."""

    def __init__(self, model: Any, recipe: str, loss: str, args: argparse.Namespace) -> None:
        self.model, self.recipe, self.loss, self.args = model, recipe, loss, args
        self.stages = stages(recipe)
        self.val_accuracy = float("nan")

    def __call__(
        self, train: tuple, val: tuple, sparsity: float, clusters: int, bar: Any = None
    ) -> Any:
        """Return the model of the last stage (QAT wrappers kept, else stripped)."""
        import keras_opt.optimization as kopt
        from keras_opt.backend import keras
        from keras_opt.callbacks import LRScheduler
        from keras_opt.schedules import OneCycle

        state = _Progress(self.stages, bar)
        try:
            return kopt.collaborative(
                self.model,
                *train,
                recipe=COLLABORATIVE_RECIPE[self.recipe],
                target_sparsity=sparsity,
                number_of_clusters=clusters,
                epochs=self.args.epochs,
                batch_size=self.args.batch_size,
                validation_data=val,
                optimizer=keras.optimizers.Adam(self.args.lr),
                loss=self.loss,
                metrics=["accuracy"],
                skip_unsupported=True,
                callbacks=[LRScheduler(OneCycle(self.args.lr)), _progress_callback(state)],
                verbose=2,  # one line per epoch, into the log
            )
        finally:
            self.val_accuracy = state.val_accuracy


def search(compress: Compressor, train: tuple, val: tuple, out: str, term: Any) -> tuple:
    """Run ``--search N`` KerasTuner trials over the recipe's settings; returns the best."""
    import keras_tuner as kt
    from tqdm.auto import tqdm

    from keras_opt.backend import keras
    from keras_opt.tuning import RandomSearch, compression

    args, recipe_stages = compress.args, compress.stages
    found: dict[tuple, tuple] = {}
    bar = tqdm(total=args.search, desc="search", unit="trial", file=term, disable=None)

    class HyperCompression(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            compression(
                hp,
                sparsity=(0.3, 0.9) if "prune" in recipe_stages else None,
                clusters=(8, 16, 32) if "cluster" in recipe_stages else None,
                qat="quantize" in recipe_stages,
            )
            return keras.models.clone_model(compress.model)

        def fit(self, hp: Any, model: Any, *fit_args: Any, **fit_kwargs: Any) -> dict:
            sparsity = hp.values.get("target_sparsity", args.target_sparsity)
            clusters = hp.values.get("number_of_clusters", args.clusters)
            result = compress(train, val, sparsity, clusters)
            accuracy = compress.val_accuracy
            found[tuple(sorted(hp.values.items()))] = (result, sparsity, clusters)
            bar.set_postfix_str(f"val_acc={accuracy:.3f}")
            bar.update(1)
            return {"val_accuracy": accuracy}

    tuner = RandomSearch(
        HyperCompression(),
        objective="val_accuracy",
        max_trials=args.search,
        directory=out,
        project_name="search",
        overwrite=True,
        seed=0,
    )
    try:
        tuner.search(*train, validation_data=val, verbose=0)
    finally:
        bar.close()
    best = tuner.get_best_hyperparameters(1)[0]
    return found[tuple(sorted(best.values.items()))]


def _split(xs: list, y: np.ndarray, fraction: float) -> tuple[tuple, tuple]:
    n_val = max(1, int(round(len(y) * fraction)))
    if n_val >= len(y):
        raise CLIError(f"--val-split {fraction} leaves no training samples ({len(y)} in DATA).")
    cut = len(y) - n_val
    return ([a[:cut] for a in xs], y[:cut]), ([a[cut:] for a in xs], y[cut:])


def _fit_inputs(xs: list) -> Any:
    return xs[0] if len(xs) == 1 else list(xs)


def _export(model: Any, folder: str, train: tuple, val: tuple, args: Any, log: str, term: Any):
    from tqdm.auto import tqdm

    from keras_opt.tflite import export

    chosen = args.variants.split(",")
    bar = tqdm(
        total=len(chosen), desc=os.path.basename(folder), unit="variant", file=term, disable=None
    )

    def step(entry: VariantResult) -> None:
        bar.set_postfix_str(entry.name + (" FAILED" if entry.error else ""))
        bar.update(1)

    try:
        return export(
            model,
            folder,
            representative_data=_fit_inputs([a[:200] for a in train[0]]),
            eval_data=val,
            variants=chosen,
            runs=20,
            isolation=args.isolation,
            log_path=log,
            on_variant=step,
        )
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from None
    finally:
        bar.close()


def format_table(results: dict[str, Any]) -> str:
    """One aligned table over every exported model: size, gzip, latency p50, accuracy."""
    from keras_opt.tflite._table import format_table as align

    head = ["model", "variant", "size KB", "gzip KB", "p50 ms", "accuracy"]
    lines = []
    for label, result in results.items():
        for r in result.table():
            if r["error"]:
                lines.append([label, r["name"], "FAILED", "", "", ""])
                continue
            acc = "-" if r["metric"] is None else f"{r['metric']:.4f}"
            p50 = "-" if r["latency_p50_ms"] is None else f"{r['latency_p50_ms']:.4f}"
            size, gz = r["size_bytes"] / 1024, r["gzip_bytes"] / 1024
            lines.append([label, r["name"], f"{size:.1f}", f"{gz:.1f}", p50, acc])
    return align(head, lines, left=2)


def optimize(args: argparse.Namespace, name: str, out: str, log: str, saved: Any, term: Any) -> int:
    """Run every step; TF and converter output goes to ``log``, progress to ``term``."""
    stdout = os.fdopen(os.dup(1), "w")
    try:
        exported = _steps(args, name, out, log, saved, term, stdout)
    finally:
        stdout.close()
    print(format_table(exported))
    failed = [f"{label}/{v}" for label, r in exported.items() for v in r.failed]
    for label, result in exported.items():
        print(f"{label}: report {result.report_path}")
    if failed:
        print(f"failed variants (see {log}): {', '.join(failed)}")
    return 1 if failed else 0


def _steps(args: Any, name: str, out: str, log: str, saved: Any, term: Any, stdout: Any) -> dict:
    from tqdm.auto import tqdm

    def say(text: str) -> None:
        print(text, file=stdout, flush=True)

    recipe_stages = stages(args.recipe)
    say(f"keras-opt optimize: {args.model} ({args.recipe}) -> {out}/ (log: {log})")
    with redirect_fds(log):
        from keras_opt.backend import flavor
        from keras_opt.tflite._data import input_specs
        from keras_opt.tflite._variants import resolve_variants

        try:
            resolve_variants(args.variants, argument="--variants")
        except (ValueError, TypeError) as err:
            raise CLIError(str(err)) from None
        say(f"[1/3] loading MODEL ({flavor()}) and checking DATA against its inputs")
        model = load(args.model, args.unsafe, saved)
        specs = input_specs(model)
        xs, y = load_data(args.data, specs, "--data")
        if args.val_data:
            train, val = (xs, y), load_data(args.val_data, specs, "--val-data")
        else:
            train, val = _split(xs, y, args.val_split)
        train = (_fit_inputs(train[0]), train[1])
        val = (_fit_inputs(val[0]), val[1])
        loss = pick_loss(args, model, y)
        exported: dict[str, Any] = {}
        compressed = None
        if recipe_stages:
            compress = Compressor(model, args.recipe, loss, args)
            if args.search:
                say(
                    f"[2/3] searching {args.search} trial(s) of {args.recipe} settings (KerasTuner)"
                )
                compressed, sparsity, clusters = search(compress, train, val, out, term)
                best = [f"target sparsity {sparsity:.2f}"] if "prune" in recipe_stages else []
                best += [f"{clusters} clusters"] if "cluster" in recipe_stages else []
                say(f"      best trial: {', '.join(best) or 'QAT (nothing to tune)'}")
            else:
                say(f"[2/3] fine-tuning: {' -> '.join(recipe_stages)}, {args.epochs} epoch(s) each")
                bar = tqdm(
                    total=args.epochs * len(recipe_stages),
                    desc="fine-tune",
                    unit="epoch",
                    file=term,
                    disable=None,  # no bar when stderr is not a terminal (logs, CI)
                )
                try:
                    compressed = compress(train, val, args.target_sparsity, args.clusters, bar)
                finally:
                    bar.close()
        else:
            say("[2/3] no compression recipe: exporting the model as it is")
        say("[3/3] exporting and measuring TFLite variants")
        exported[name] = _export(model, os.path.join(out, "baseline"), train, val, args, log, term)
        if compressed is not None:
            import keras_opt.optimization as kopt

            folder = os.path.join(out, args.recipe)
            exported[f"{name} {args.recipe}"] = _export(
                compressed, folder, train, val, args, log, term
            )
            kopt.strip(compressed).save(os.path.join(folder, f"{name}_{args.recipe}.keras"))
    return exported
