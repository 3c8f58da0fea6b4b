"""Every script in examples/ runs (smoke test), in the flavor of this test run.

Each example exposes ``main(...)``; it is imported and called with small
settings so the whole set stays cheap. Examples that need the tf_keras flavor
(TFMOT) handle the Keras 3 case themselves, as documented in each script.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def _load(name):
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", os.path.join(EXAMPLES, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lr_schedules_example():
    results = _load("lr_schedules").main(epochs=2)
    assert set(results) == {"warmup_cosine_in_graph", "one_cycle_callback", "sgdr_plateau_callback"}
    assert all(acc > 0.5 for acc in results.values())


def test_lr_finder_example(tmp_path):
    accuracy = _load("lr_finder").main(plot=str(tmp_path / "lr.png"), epochs=3)
    assert accuracy > 0.8
    assert (tmp_path / "lr.png").exists()


def test_every_example_is_covered():
    """A new example must get a smoke test (here or in its feature's test folder)."""
    scripts = sorted(
        f[:-3] for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_")
    )
    corpus = ""
    for path in pathlib.Path(ROOT, "tests").rglob("*.py"):
        corpus += path.read_text()
    missing = [s for s in scripts if not re.search(rf'"{s}"|\b{s}\.py', corpus)]
    assert not missing, f"examples without a smoke test: {missing}"


@pytest.mark.parametrize("script", ["lr_schedules.py"])
def test_example_runs_as_a_script(script):
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("pruning", {"sparsity": 0.5, "epochs": 1}),
        ("clustering", {"clusters": 8, "per_channel": True}),
        ("qat", {"epochs": 1}),
    ],
)
def test_compression_examples_in_both_flavors(name, kwargs):
    accuracy = _load(name).main(**kwargs)
    assert accuracy > 0.5


def test_pcqat_example():
    report = _load("pcqat").main(sparsity=0.5, clusters=8, epochs=1)
    assert report["sparsity"] == pytest.approx(0.5, abs=0.02)


def test_distillation_example():
    accuracy = _load("distillation").main(epochs=1)
    assert accuracy > 0.3


def test_keras_tuner_search_example(tmp_path):
    front = _load("keras_tuner_search").main(trials=2, epochs=2, out=str(tmp_path / "best"))
    assert front
    assert all("tflite_accuracy" in row["metrics"] for row in front)
    assert (tmp_path / "best" / "manifest.json").exists()
