"""The README's Python snippets run as written (in the flavor of this test run).

Blocks after a ``<!-- readme-test: tf_keras -->`` marker run only in the tf_keras
session, blocks after ``<!-- readme-test: keras3 -->`` only in the Keras 3 one;
unmarked blocks are flavor-neutral and run in both. Blocks run in order in
one fresh process inside a temporary folder, since they share the setup block.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from keras_opt import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- readme-test: (\w+) -->\s*)?```python\n(.*?)```", re.S)


def readme_blocks():
    text = pathlib.Path(ROOT, "README.md").read_text(encoding="utf-8")
    return [(m.group(2), m.group(3)) for m in BLOCK.finditer(text)]


def test_readme_has_a_snippet_per_story():
    code = "\n".join(body for _, body in readme_blocks())
    for name in (
        "LRScheduler",
        "find_lr",
        "TrainingMonitor",
        "NaNGuard",
        "check_gradients",
        "analyze_errors",
        "kopt.prune",
        "kopt.quantize",
        "kopt.cluster",
        "kopt.collaborative",
        "Distiller",
        "keras_opt.tflite.export",
        "RandomSearch",
        "auto_strategy",
    ):
        assert name in code, name


@pytest.mark.slow
def test_readme_snippets_run(tmp_path):
    blocks = [body for only, body in readme_blocks() if only in (None, backend.flavor())]
    script = tmp_path / "readme_snippets.py"
    script.write_text("\n\n".join(blocks))
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    if not backend.is_tf_keras():
        assert (tmp_path / "tflite_models" / "readme" / "manifest.json").exists()
