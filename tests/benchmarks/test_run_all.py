"""Smoke test of ``benchmarks/run_all.py``: structure of its outputs, never the values."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_ALL = os.path.join(ROOT, "benchmarks", "run_all.py")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            RUN_ALL,
            "--quick",
            "--only",
            "scheduler_overhead",
            "--out-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc, out


def test_run_all_quick_writes_results_json_and_markdown(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/1] scheduler_overhead (keras3)" in proc.stdout
    report = json.loads((out / "results.json").read_text())
    assert report["quick"] is True
    assert set(report["machine"]) >= {"cores", "cpu_model", "platform", "python"}
    assert report["machine"]["cores"] == os.cpu_count()
    assert report["versions"]["tensorflow"]
    assert list(report["benchmarks"]) == ["scheduler_overhead"]
    entry = report["benchmarks"]["scheduler_overhead"]
    assert entry["status"] == "ok"
    assert entry["flavor"] == "keras3"
    assert entry["result"]["benchmark"] == "scheduler_overhead"
    assert (out / "results" / "scheduler_overhead.json").is_file()
    (row,) = entry["rows"]
    assert set(row) == {"metric", "value", "target", "met"}
    assert row["target"] == "<= 1.02"
    assert isinstance(row["met"], bool)
    # The row's verdict is the script's own: ratio against its target.
    assert row["met"] == (entry["result"]["ratio"] <= entry["result"]["target_ratio"])

    markdown = (out / "RESULTS.md").read_text()
    assert markdown.startswith("# keras_opt benchmark results")
    assert "| benchmark | flavor | metric | measured | target | met |" in markdown
    assert "| scheduler_overhead | keras3 | Fit time ratio with LRScheduler" in markdown
    assert "Quick smoke run" in markdown
    assert f"{report['machine']['cores']} cores" in markdown


def test_run_all_rejects_unknown_benchmark_name(tmp_path):
    proc = subprocess.run(
        [sys.executable, RUN_ALL, "--only", "nope", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "Argument `--only` must name benchmarks among scheduler_overhead" in proc.stderr
    assert "Received: --only='nope'" in proc.stderr
    assert not (tmp_path / "results.json").exists()
