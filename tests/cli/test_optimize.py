"""keras-opt optimize: the file's flavor, --import, bad input (exit 2), the whole road."""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from keras_opt.backend import flavor, keras
from keras_opt.cli import main
from keras_opt.cli._optimize import RECIPES
from keras_opt.tflite._report import table_rows
from tests.conftest import build_residual_cnn, build_sequential_cnn, compile_classifier

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def saved(digits, tmp_path_factory):
    """A briefly trained residual CNN saved in the flavor in use, and .npz data files."""
    x, y, xt, yt = digits
    folder = tmp_path_factory.mktemp("optimize")
    model = compile_classifier(build_residual_cnn())
    model.fit(x[:300], y[:300], epochs=2, batch_size=32, verbose=0)
    path = str(folder / "res_cnn.keras")
    model.save(path)
    np.savez(folder / "train.npz", x=x[:240], y=y[:240])
    np.savez(folder / "val.npz", x=xt[:60], y=yt[:60])
    np.savez(folder / "wrong_shape.npz", x=np.zeros((10, 5), "float32"), y=np.zeros(10, "int64"))
    np.savez(folder / "no_labels.npz", x=x[:10])
    return folder, path


def _run(args, tmp_path, pythonpath=(), **env):
    return subprocess.run(
        [sys.executable, "-m", "keras_opt", "optimize", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=280,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, *map(str, pythonpath)]), **env},
    )


def _other_flavor_env() -> str:
    """TF_USE_LEGACY_KERAS naming the flavor the session's files were NOT saved with."""
    return "1" if flavor() == "keras3" else "0"


def _kernel_sparsity(keras_file: str) -> float:
    """Fraction of zeros over the conv/dense kernels of a .keras file (read with h5py)."""
    with zipfile.ZipFile(keras_file) as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as h:
        kernels: list[np.ndarray] = []
        h.visititems(
            lambda name, obj: (
                kernels.append(obj[()].ravel())
                if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and name.startswith("layers/")
                else None
            )
        )
    assert len(kernels) == 3  # stem, res_conv, head
    return float(np.mean(np.concatenate(kernels) == 0))


def test_optimize_help_lists_every_recipe(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "keras-opt optimize" in text
    assert "compression recipe: none, prune, cluster, qat, pqat, cqat, pcqat" in text


def test_optimize_unknown_recipe_lists_valid_recipes(saved, capsys):
    folder, path = saved
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", path, "--data", str(folder / "train.npz"), "--recipe", "sparsify"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'sparsify'" in err
    assert all(repr(r) in err for r in RECIPES)


@pytest.mark.parametrize("missing", ["model", "data"])
def test_optimize_missing_file_exits_2(saved, missing, capsys):
    folder, path = saved
    model = str(folder / "nope.keras") if missing == "model" else path
    data = str(folder / "nope.npz") if missing == "data" else str(folder / "train.npz")
    assert main(["optimize", model, "--data", data]) == 2
    err = capsys.readouterr().err
    flag = "MODEL" if missing == "model" else "--data"
    assert f"keras-opt optimize: error: {flag} '{folder}/nope." in err
    assert "does not exist" in err


@pytest.mark.parametrize("kind", ["text", "npz"])
def test_optimize_rejects_a_file_that_is_not_a_keras_model(saved, kind, tmp_path, capsys):
    folder, _ = saved
    fake = tmp_path / "fake.keras"
    if kind == "text":
        fake.write_text("not a model\n")
    else:
        np.savez(tmp_path / "arrays.npz", x=np.zeros(3))
        os.rename(tmp_path / "arrays.npz", fake)
    assert main(["optimize", str(fake), "--data", str(folder / "train.npz")]) == 2
    assert f"MODEL '{fake}' is not a Keras model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("wrong_shape.npz", "has the wrong shape for input 'image': expected (batch, 8, 8, 1)"),
        ("no_labels.npz", "holds no labels: add an array `y`"),
    ],
)
def test_optimize_data_that_does_not_fit_exits_2(saved, data, message, tmp_path, capsys):
    folder, path = saved
    code = main(
        ["optimize", path, "--data", str(folder / data), "--recipe", "none", "--out", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: --data '{folder / data}'" in err
    assert message in err


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [("--epochs", "0", ">= 1"), ("--val-split", "1.5", "in (0, 1)"), ("--clusters", "1", ">= 2")],
)
def test_optimize_bad_numbers_exit_2(saved, flag, value, rule, capsys):
    folder, path = saved
    assert main(["optimize", path, "--data", str(folder / "train.npz"), flag, value]) == 2
    assert f"{flag} must be {rule}. Received: {float(value) if '.' in value else value}" in (
        capsys.readouterr().err
    )


def test_optimize_file_of_the_other_flavor_in_a_running_process_exits_2(saved, tmp_path, capsys):
    """Once TensorFlow is imported the flavor is fixed: a file of the other one gets one message."""
    folder, _ = saved
    other = tmp_path / "other.keras"
    version = "2.21.0" if flavor() == "keras3" else "3.15.0"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": version}))
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"")
    out = tmp_path / "out"
    args = [str(other), "--data", str(folder / "train.npz"), "--recipe", "prune", "--out", str(out)]
    assert main(["optimize", *args]) == 2
    err = capsys.readouterr().err
    wrote = "tf_keras (Keras 2)" if flavor() == "keras3" else "Keras 3"
    assert f"was saved by {wrote}, which the {flavor()} flavor this process already runs" in err
    assert "Run keras-opt in a fresh process" in err


def test_optimize_prunes_a_model_in_the_flavor_that_saved_it(saved, tmp_path):
    """The file picks the flavor, not TF_USE_LEGACY_KERAS: a Keras 3 file is pruned by the
    native engine, a tf_keras file by TFMOT; 50% zeros, exported, tabulated."""
    folder, path = saved
    out = tmp_path / "out"
    args = [path, "--data", str(folder / "train.npz"), "--val-data", str(folder / "val.npz")]
    args += ["--recipe", "prune", "--target-sparsity", "0.5", "--epochs", "1"]
    args += ["--variants", "float32,int8", "--isolation", "none", "--out", str(out)]
    proc = _run(args, tmp_path, TF_USE_LEGACY_KERAS=_other_flavor_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"loading MODEL ({flavor()})" in proc.stdout
    rows = [r.split() for r in proc.stdout.splitlines() if r.startswith("res_cnn ")]
    rows = [r for r in rows if len(r) >= 6]
    assert [(r[0], r[-5]) for r in rows if r[1] != "prune"] == [
        ("res_cnn", "float32"),
        ("res_cnn", "int8"),
    ]
    pruned = [r for r in rows if r[1] == "prune"]
    assert [r[2] for r in pruned] == ["float32", "int8"]
    manifest = json.loads((out / "prune" / "manifest.json").read_text())
    accuracies = {r["name"]: r["metric"] for r in table_rows(manifest)}
    assert all(0.0 <= a <= 1.0 for a in accuracies.values())
    assert float(pruned[0][-1]) == pytest.approx(accuracies["float32"], abs=1e-4)
    # The stripped model holds the 50% zeros the pruning schedule targets.
    assert _kernel_sparsity(str(out / "prune" / "res_cnn_prune.keras")) == pytest.approx(
        0.5, abs=0.02
    )
    assert (out / "baseline" / "report.md").exists()
    assert "report" in proc.stdout
    # No TF/converter chatter on the terminal: it is in the log.
    assert "tensorflow" not in proc.stdout.lower()
    assert "absl" not in proc.stderr
    assert "W0000" not in proc.stderr
    assert os.path.getsize(out / "optimize.log") > 0


@pytest.mark.tf_keras_only
def test_optimize_recipe_none_exports_a_tf_keras_model_in_a_fresh_process(digits, tmp_path):
    x, y, xt, yt = digits
    model = compile_classifier(build_sequential_cnn())
    model.fit(x[:300], y[:300], epochs=2, verbose=0)
    path = str(tmp_path / "seq.keras")
    model.save(path)
    expected = float(model.evaluate(xt[:60], yt[:60], verbose=0)[1])
    np.savez(tmp_path / "train.npz", x=x[:100], y=y[:100])
    np.savez(tmp_path / "val.npz", x=xt[:60], y=yt[:60])
    args = [path, "--data", str(tmp_path / "train.npz"), "--val-data", str(tmp_path / "val.npz")]
    args += ["--recipe", "none", "--variants", "float32", "--isolation", "none"]
    args += ["--out", str(tmp_path / "out")]
    proc = _run(args, tmp_path, TF_USE_LEGACY_KERAS="0")  # switched to the file's flavor
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "loading MODEL (tf_keras)" in proc.stdout
    row = next(line.split() for line in proc.stdout.splitlines() if line.startswith("seq "))
    assert row[1] == "float32"
    assert float(row[-1]) == pytest.approx(expected, abs=1e-4)
    assert flavor() == "tf_keras"


@pytest.mark.keras3_only
def test_optimize_search_picks_the_clusters_with_keras_tuner(saved, tmp_path):
    """--search runs KerasTuner trials over the recipe's settings and keeps the best."""
    folder, path = saved
    out = tmp_path / "out"
    args = [path, "--data", str(folder / "train.npz"), "--val-data", str(folder / "val.npz")]
    args += ["--recipe", "cluster", "--search", "2", "--epochs", "1"]
    args += ["--variants", "float32", "--isolation", "none", "--out", str(out)]
    proc = _run(args, tmp_path, TF_USE_LEGACY_KERAS="0")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "searching 2 trial(s) of cluster settings (KerasTuner)" in proc.stdout
    best = re.search(r"best trial: (\d+) clusters", proc.stdout)
    assert best, proc.stdout[-2000:]
    clusters = int(best.group(1))
    assert clusters in (8, 16, 32)
    trials = list((out / "search").glob("trial_*"))
    assert len(trials) == 2
    keras_file = out / "cluster" / "res_cnn_cluster.keras"
    with zipfile.ZipFile(keras_file) as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as h:
        kernels = []
        h.visititems(
            lambda name, obj: (
                kernels.append(obj[()])
                if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and name.startswith("layers/")
                else None
            )
        )
    assert kernels
    assert max(len(np.unique(k)) for k in kernels) <= clusters


SCALE_MODULE = '''"""A user's module with one custom layer, registered for .keras loading."""
import keras


@keras.saving.register_keras_serializable(package="kopt_test")
class Scale(keras.layers.Layer):
    """Multiplies its input by one learned scalar."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale
'''


@pytest.fixture(scope="module")
def custom_saved(digits, tmp_path_factory):
    """A Keras 3 CNN with a registered custom layer ``Scale``, saved; the module is in
    ``folder`` and is NOT left imported or registered in this process."""
    x, y, _, _ = digits
    folder = tmp_path_factory.mktemp("custom")
    (folder / "kopt_scale_layers.py").write_text(SCALE_MODULE)
    sys.path.insert(0, str(folder))
    try:
        scale_layers = importlib.import_module("kopt_scale_layers")
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 1), name="image")
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
        h = scale_layers.Scale(name="scale")(h)
        h = keras.layers.Flatten(name="flatten")(keras.layers.MaxPooling2D(name="pool")(h))
        outputs = keras.layers.Dense(10, activation="softmax", name="head")(h)
        model = compile_classifier(keras.Model(inputs, outputs, name="custom_cnn"))
        model.fit(x[:300], y[:300], epochs=2, batch_size=32, verbose=0)
        path = str(folder / "custom_cnn.keras")
        model.save(path)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("kopt_scale_layers", None)
        keras.saving.get_custom_objects().pop("kopt_test>Scale", None)
    return folder, path


@pytest.mark.keras3_only
def test_optimize_compresses_a_keras3_model_with_a_custom_layer_given_import(
    saved, custom_saved, tmp_path
):
    """--import loads the user's layer; PCQAT runs natively, the custom layer stays float."""
    data, _ = saved
    folder, path = custom_saved
    out = tmp_path / "out"
    args = [path, "--import", "kopt_scale_layers", "--data", str(data / "train.npz")]
    args += ["--val-data", str(data / "val.npz"), "--recipe", "pcqat", "--epochs", "1"]
    args += ["--variants", "int8", "--isolation", "none", "--out", str(out)]
    proc = _run(args, tmp_path, pythonpath=[folder], TF_USE_LEGACY_KERAS="1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "loading MODEL (keras3)" in proc.stdout
    assert "fine-tuning: prune -> cluster -> quantize, 1 epoch(s) each" in proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("custom_cnn ")]
    rows = [r for r in rows if len(r) >= 6]  # table rows, not "custom_cnn pcqat: report ..."
    assert [r[:-5] for r in rows] == [["custom_cnn"], ["custom_cnn", "pcqat"]]
    assert all(0.0 <= float(r[-1]) <= 1.0 for r in rows)
    manifest = json.loads((out / "pcqat" / "manifest.json").read_text())
    assert [r["name"] for r in table_rows(manifest) if not r["error"]] == ["int8"]
    assert (out / "pcqat" / "custom_cnn_pcqat.keras").exists()


@pytest.mark.keras3_only
def test_optimize_custom_layer_without_import_names_the_class_and_the_flag(
    saved, custom_saved, tmp_path, capsys
):
    data, _ = saved
    _, path = custom_saved
    args = [path, "--data", str(data / "train.npz"), "--recipe", "none", "--out", str(tmp_path)]
    assert main(["optimize", *args]) == 2
    err = capsys.readouterr().err
    assert "uses the custom class 'Scale', which no imported module registers" in err
    assert "Pass --import MODULE" in err


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (
            "kopt_no_such_module",
            "--import 'kopt_no_such_module' failed: ModuleNotFoundError: No module named "
            "'kopt_no_such_module'. Pass a module name",
        ),
        ("kopt_broken_layers", "--import 'kopt_broken_layers' failed: RuntimeError: boom."),
    ],
)
def test_optimize_import_that_fails_names_the_module(
    saved, module, message, tmp_path, monkeypatch, capsys
):
    folder, path = saved
    (tmp_path / "kopt_broken_layers.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    args = [path, "--import", module, "--data", str(folder / "train.npz"), "--out", str(out)]
    assert main(["optimize", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written before the imports succeed
