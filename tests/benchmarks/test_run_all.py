"""``benchmarks/run_all.py``: a smoke run (structure, never the values) and the noise rules.

The noise rules are tested with fake runs (scripted loads and spreads): no test
here depends on how fast anything ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_ALL = os.path.join(ROOT, "benchmarks", "run_all.py")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import run_all  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            RUN_ALL,
            "--quick",
            "--only",
            "callback_overhead",
            "--max-attempts",
            "1",
            "--out-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    return proc, out


@pytest.mark.slow
def test_run_all_quick_writes_results_json_and_markdown(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/1] callback_overhead (keras3 + tf_keras)" in proc.stdout
    report = json.loads((out / "results.json").read_text())
    assert report["quick"] is True
    assert set(report["machine"]) >= {"cores", "cpu_model", "platform", "python"}
    assert report["machine"]["cores"] == os.cpu_count()
    assert report["versions"]["tensorflow"]
    assert list(report["benchmarks"]) == ["callback_overhead"]
    entry = report["benchmarks"]["callback_overhead"]
    assert entry["status"] == "ok"
    assert entry["result"]["benchmark"] == "callback_overhead"
    assert set(entry["result"]["flavors"]) == {"keras3", "tf_keras"}
    assert (out / "results" / "callback_overhead.json").is_file()
    # Load and CPU/wall recorded around the run.
    assert set(entry["measured"]) == {"load_1min_before", "load_1min_after", "cpu_wall_ratio"}
    assert len(entry["attempts"]) == 1
    rows = entry["rows"]
    assert [r["metric"] for r in rows] == [
        "NaNGuard() vs plain fit (keras3)",
        "NaNGuard() vs plain fit (tf_keras)",
    ]
    for row in rows:
        assert row["target"] == "<= 1.02"
        assert row["verdict"] in ("met", "missed", "noisy")
        assert isinstance(row["met"], bool)
        if row["verdict"] != "noisy":
            assert row["met"] == (row["verdict"] == "met")
    markdown = (out / "RESULTS.md").read_text()
    assert markdown.startswith("# keras_opt benchmark results")
    assert "| benchmark | flavor | metric | measured | target | verdict |" in markdown
    assert "| callback_overhead | keras3 + tf_keras | NaNGuard() vs plain fit (keras3)" in markdown
    assert "load before / after, CPU/wall" in markdown
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
    assert "Argument `--only` must name benchmarks among callback_overhead" in proc.stderr
    assert "Received: --only='nope'" in proc.stderr
    assert not (tmp_path / "results.json").exists()


# ----- the noise rules, with fake runs --------------------------------------------------------
POLICY = run_all.NoisePolicy(max_load_per_core=0.5, max_spread=0.03, max_attempts=3)
BENCH = run_all.Benchmark("fake", "fake.py", False, (), (), 1, lambda r: [], noise=POLICY)


class FakeRuns:
    """Each call returns the next scripted run: (load before, [(met, spread), ...])."""

    def __init__(self, script):
        self.script, self.calls = list(script), 0

    def __call__(self, bench, out_dir, log_dir, quick):
        load, rows = self.script[self.calls]
        self.calls += 1
        return {
            "status": "ok",
            "measured": {"load_1min_before": load, "load_1min_after": load, "cpu_wall_ratio": 1.8},
            "rows": [
                run_all._row(f"row {i}", "x", "<= 1.02", met, spread)
                for i, (met, spread) in enumerate(rows)
            ],
        }


def _run(script, **kwargs):
    fake = FakeRuns(script)
    entry = run_all.run_one(BENCH, "out", "logs", False, run=fake, cores=2, **kwargs)
    return entry, fake.calls


def test_quiet_run_with_tight_repeats_is_judged_once():
    entry, calls = _run([(0.2, [(True, 0.01), (False, 0.02)])])
    assert calls == 1
    assert [r["verdict"] for r in entry["rows"]] == ["met", "missed"]
    assert entry["noise"] == []


def test_run_under_load_is_repeated_until_quiet():
    entry, calls = _run([(3.0, [(True, 0.01)]), (0.4, [(False, 0.01)])])
    assert calls == 2
    assert [r["verdict"] for r in entry["rows"]] == ["missed"]
    assert [a["reasons"] != [] for a in entry["attempts"]] == [True, False]


def test_still_loaded_after_the_limit_is_marked_noisy_not_missed():
    entry, calls = _run([(3.0, [(False, 0.01)])] * 3)
    assert calls == 3
    (row,) = entry["rows"]
    assert row["verdict"] == "noisy"
    assert "load average 3.00" in row["noise"]
    assert len(entry["attempts"]) == 3


def test_wide_spread_marks_only_that_row_noisy():
    entry, calls = _run([(0.2, [(True, 0.10), (True, 0.01)])] * 3)
    assert calls == 3
    assert [r["verdict"] for r in entry["rows"]] == ["noisy", "met"]
    assert "repeats spread 10.0% > 3%" in entry["rows"][0]["noise"]


def test_least_noisy_attempt_is_kept():
    entry, _ = _run(
        [
            (0.2, [(True, 0.10), (True, 0.10)]),
            (0.2, [(True, 0.01), (True, 0.10)]),
            (3.0, [(True, 0.01), (True, 0.01)]),
        ]
    )
    assert [r["verdict"] for r in entry["rows"]] == ["met", "noisy"]


def test_max_attempts_override_and_rows_without_target():
    entry, calls = _run([(3.0, [(None, 0.5)])] * 3, max_attempts=1)
    assert calls == 1
    assert entry["rows"][0]["verdict"] == "-"


def test_markdown_shows_verdicts_and_load():
    report = {
        "date": "d",
        "quick": False,
        "note": None,
        "machine": {
            "cores": 2,
            "cpu_model": "cpu",
            "platform": "p",
            "python": "3",
            "load_average_1min_at_start": 3.0,
        },
        "versions": {},
        "benchmarks": {},
    }
    entry, _ = _run([(3.0, [(False, 0.01)])] * 3)
    report["benchmarks"]["fake"] = {
        **entry,
        "script": "benchmarks/fake.py",
        "args": [],
        "flavor": "keras3",
        "seconds": 1.0,
    }
    text = run_all.render_markdown(report)
    assert "| fake | keras3 | row 0 | x | <= 1.02 | noisy |" in text
    assert "3.0 / 3.0, 1.8" in text
    assert "(3 runs)" in text
