"""Smoke test of examples/export_tflite.py (small settings)."""

from __future__ import annotations

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_export_tflite_example(tmp_path):
    path = os.path.join(ROOT, "examples", "export_tflite.py")
    spec = importlib.util.spec_from_file_location("example_export_tflite", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(out=str(tmp_path / "digits"), epochs=3, runs=5, isolation="none")
    assert result.failed == {}
    assert [r["name"] for r in result.table()] == ["float32", "float16", "int8"]
    keras_acc = result.manifest["keras_metrics"]["accuracy"]
    assert keras_acc > 0.7
    assert abs(result["int8"]["metrics"]["accuracy"] - keras_acc) <= 0.02
    assert (tmp_path / "digits" / "manifest.json").is_file()
