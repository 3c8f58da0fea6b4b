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
@pytest.mark.one_session
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
    assert set(entry["measured"]) == {
        "load_1min_before",
        "load_1min_after",
        "cpu_wall_ratio",
        "other_processes_cores_used",
        "steal_cores",
        "settle_waited_s",
    }
    assert entry["measured"]["settle_waited_s"] is None  # a quick run does not wait
    assert entry["measured"]["cpu_wall_ratio"] > 0.2  # the benchmark's own CPU, counted as own
    assert entry["measured"]["other_processes_cores_used"] >= 0.0
    assert len(entry["attempts"]) == 1
    rows = entry["rows"]
    steps = [
        "an empty per-batch Python callback (anchor) per fit step, as a fit ratio",
        "NaNGuard() per fit step, as a fit ratio",
        "LRScheduler + TrainingMonitor + NaNGuard per fit step, as a fit ratio",
    ]
    assert [r["metric"] for r in rows] == [
        f"{metric} ({flavor})"
        for flavor in ("keras3", "tf_keras")
        for metric in ["NaNGuard() vs plain fit", *steps]
    ]
    for i, flavor in enumerate(("keras3", "tf_keras")):
        for row, name in zip(
            rows[4 * i + 1 : 4 * i + 4],
            ("empty_batch_callback", "nan_guard", "standard_set"),
            strict=True,
        ):
            step = entry["result"]["flavors"][flavor][f"{name}_step"]
            assert step["rounds"] == 100
            assert "over 100 rounds of step blocks" in row["value"]
            if name == "empty_batch_callback":
                assert step["verdict"] is None
                assert row["target"] == "none (anchor)"
            else:  # too few rounds to decide
                assert step["verdict"] == row["verdict"] == "noisy"
                assert row["target"] == f"<= {step['target_ratio']}"
    for row, flavor in zip(rows[::4], ("keras3", "tf_keras"), strict=True):
        config = entry["result"]["flavors"][flavor]["configs"]["nan_guard"]
        assert row["target"] == "<= 1.02"
        low, high = config["interval"]
        assert row["value"].startswith(f"{config['ratio']:.3f} (90% interval {low:.3f}-{high:.3f}")
        # One epoch pair is too few for a 90% interval: a quick run decides nothing.
        assert config["verdict"] == "noisy"
        assert row["verdict"] == "noisy"
        assert row["met"] is False
    markdown = (out / "RESULTS.md").read_text()
    assert markdown.startswith("# keras_opt benchmark results")
    assert "| benchmark | flavor | metric | measured | target | verdict |" in markdown
    assert "| callback_overhead | keras3 + tf_keras | NaNGuard() vs plain fit (keras3)" in markdown
    assert "load before / after, CPU/wall" in markdown
    assert "Quick smoke run" in markdown
    assert f"{report['machine']['cores']} cores" in markdown


def _overhead_result(low, high):
    config = {
        "label": "NaNGuard()",
        "ratio": (low + high) / 2,
        "pair_ratios": [low, (low + high) / 2, high],
        "interval": [low, high],
        "interval_coverage": 0.9,
        "spread": 0.2,
        "cpu_ratio": 1.0,
        "median_epoch_s": 0.5,
        "plain_median_epoch_s": 0.5,
        "target_ratio": 1.02,
        "total_ratio": (low + high) / 2,
        "us_per_step": 80.0,
        "verdict": "met" if high <= 1.02 else "missed" if low > 1.02 else "noisy",
    }
    return {"flavors": {"keras3": {"configs": {"plain": {}, "nan_guard": config}}}}


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(0.97, 1.01, "met"), (1.03, 1.09, "missed"), (0.99, 1.05, "noisy")],
)
def test_overhead_verdict_needs_the_whole_interval_on_one_side_of_the_target(low, high, verdict):
    bench = next(b for b in run_all.BENCHMARKS if b.name == "callback_overhead")
    rows = run_all.judge(run_all._callback_overhead(_overhead_result(low, high)), [], bench.noise)
    (row,) = rows
    assert row["verdict"] == verdict
    assert "+80 us per step" in row["value"]
    assert f"90% interval {low:.3f}-{high:.3f}, 3 epoch pairs" in row["value"]
    if verdict == "noisy":
        assert "straddles 1.02" in row["noise"]


@pytest.mark.parametrize(
    ("extra", "verdict"),
    [((10.0, 30.0), "met"), ((90.0, 120.0), "missed"), ((40.0, 90.0), "noisy")],
)
def test_nan_guard_step_cost_row_reads_the_interval_against_the_fit_step(extra, verdict):
    fit_step = 3000.0  # us: 2% is 60 us
    low, high = (1 + e / fit_step for e in extra)
    step = {
        "rounds": 3000,
        "plain_step_us": 2000.0,
        "label": "NaNGuard()",
        "amortized_extra_us": sum(extra) / 2,
        "amortized_extra_us_interval": list(extra),
        "plain_again_extra_us_interval": [-8.0, 5.0],
        "interval_coverage": 0.9,
        "plain_fit_step_us": fit_step,
        "implied_fit_ratio": 1 + sum(extra) / 2 / fit_step,
        "implied_fit_ratio_interval": [low, high],
        "target_ratio": 1.02,
        "verdict": "met" if high <= 1.02 else "missed" if low > 1.02 else "noisy",
    }
    result = _overhead_result(0.97, 1.01)
    result["flavors"]["keras3"]["nan_guard_step"] = step
    bench = next(b for b in run_all.BENCHMARKS if b.name == "callback_overhead")
    rows = run_all.judge(run_all._callback_overhead(result), [], bench.noise)
    row = rows[-1]
    assert row["metric"] == "NaNGuard() per fit step, as a fit ratio (keras3)"
    assert row["verdict"] == verdict
    assert f"interval {low:.3f}-{high:.3f}" in row["value"]
    assert (
        f"(+{extra[0]:.0f} to +{extra[1]:.0f}, snapshot steps amortized) over 3000 rounds"
        in (row["value"])
    )
    assert "A/A -8 to +5 us" in row["value"]


@pytest.mark.parametrize(
    ("rounds", "ratio", "aa", "verdict"),
    [
        (1500, (1.010, 1.015), (-5.0, 4.0), "met"),
        (1500, (1.025, 1.030), (-5.0, 4.0), "missed"),
        (1500, (1.015, 1.025), (-5.0, 4.0), "noisy"),
        (100, (1.010, 1.015), (-5.0, 4.0), "noisy"),  # a smoke run decides nothing
        (1500, (1.010, 1.015), (12.0, 30.0), "noisy"),  # the A/A comparison is biased
    ],
)
def test_step_verdict_needs_rounds_and_an_unbiased_a_a(rounds, ratio, aa, verdict):
    import callback_overhead

    step = {
        "rounds": rounds,
        "instances": max(1, min(8, rounds // 150)),
        "implied_fit_ratio_interval": list(ratio),
        "plain_again_extra_us_interval": list(aa),
        "target_ratio": 1.02,
    }
    assert callback_overhead.step_verdict(step) == verdict


@pytest.mark.parametrize(
    ("values", "expected"),
    [(list(range(8)), (1, 6)), (list(range(12)), (2, 9)), ([5, 1, 3, 2], (1, 5))],
)
def test_median_interval_uses_binomial_order_statistics(values, expected):
    import callback_overhead

    assert callback_overhead.median_interval(values) == expected


@pytest.mark.parametrize(("flag", "value"), [("--rounds", "0"), ("--step-rounds", "-1")])
def test_callback_overhead_rejects_bad_counts(flag, value, capsys):
    import callback_overhead

    with pytest.raises(SystemExit) as exc:
        callback_overhead.main([flag, value])
    assert exc.value.code == 2
    rule = ">= 1" if flag == "--rounds" else ">= 0"
    assert f"Argument `{flag}` must be {rule}. Received: {flag}={value}" in capsys.readouterr().err


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


@pytest.mark.parametrize(
    ("measured", "reason"),
    [
        (
            {"other_processes_cores_used": 0.9},
            "other processes used 0.90 cores during the run > 0.25",
        ),
        ({"steal_cores": 0.3}, "steal time 0.30 cores during the run > 0.1"),
    ],
)
def test_other_processes_or_steal_during_the_run_make_it_noisy(measured, reason):
    quiet = {"load_1min_before": 0.2, "other_processes_cores_used": 0.05, "steal_cores": 0.0}
    assert run_all.noise_reasons(quiet, POLICY, 2) == []
    assert run_all.noise_reasons({**quiet, **measured}, POLICY, 2) == [reason]


def test_machine_window_counts_own_work_as_own_not_as_other_processes():
    import _machine

    with _machine.Window() as window:
        end = _machine.time.process_time() + 0.3
        while _machine.time.process_time() < end:  # busy on this process only
            pass
    record = window.record
    assert record["own_cpu_s"] >= 0.3
    assert 0.5 <= record["own_cores_used"] <= 1.05
    # Others: whatever the rest of the machine did, never this process's own 0.3 s counted twice.
    assert 0.0 <= record["other_processes_cores_used"] < 2.0
    assert record["steal_cores"] >= 0.0


def test_settle_returns_at_once_when_the_load_is_low_enough():
    import _machine

    settled = _machine.settle(max_load=1e9, timeout_s=5)
    assert settled["waited_s"] < 1.0
    assert settled["load_average_1min"] is not None


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


# ----- summaries of the scripts' JSON, with fake results --------------------------------------
def _comparison_entry(verdict, noise=None, **fields):
    return {"target": "t", "verdict": verdict, "noise": noise or [], **fields}


def fake_compression_json():
    """compression.json's layout: comparison entries with verdicts, PCQAT under each flavor."""
    acc = {"native": 0.99, "tfmot": 0.985, "native_minus_tfmot_points": 0.5}
    drops = {"native_drop_points": 0.25, "tfmot_drop_points": 0.5, "float32": 0.9925}
    step = {"ratio": 1.3, "cpu_ratio": 1.1, "spread": 0.4}
    latency = {
        "float32_p50_ms": 0.1,
        "int8_p50_ms": 0.08,
        "int8_over_float32": 0.8,
        "load_average_1min": [4.0, 4.1],
    }
    pcqat = {
        "min_sparsity": 0.5,
        "max_sparsity": 0.5,
        "max_unique_per_channel": 16,
        "kernels_in_tflite": {"a": {}, "b": {}},
        "target": "every kernel int8, 50% +- 2% zeros and <= 16 int8 values per output channel",
    }
    return {
        "comparison": {
            "prune_80_accuracy": _comparison_entry("met", **acc),
            "prune_80_gzipped_size": _comparison_entry(
                "missed", native_over_tfmot=1.2, native_bytes=12, tfmot_bytes=10
            ),
            "prune_step_time_native_vs_tfmot": _comparison_entry(
                "noisy", ["load average 4.2 > 1.0"], native_ms=2.0, tfmot_ms=1.5, **step
            ),
            "prune_step_time_tfmot_vs_unpruned": _comparison_entry("reference", **step),
            "qat_accuracy_vs_float": _comparison_entry("met", native=0.99, tfmot=0.985, **drops),
            "pcqat_gzipped_size_vs_float": _comparison_entry(
                "missed", native_ratio=0.15, tfmot_ratio=0.13, native_bytes=45, tfmot_bytes=39
            ),
            "pcqat_kernels_in_file": _comparison_entry("met"),
            "mobilenet_latency_native": _comparison_entry("noisy", [], **latency),
        },
        "keras3": {"pcqat_int8": {**pcqat, "met": True}},
        "tf_keras": {"pcqat_int8": {**pcqat, "max_unique_per_channel": 17, "met": False}},
    }


def _by_metric(rows):
    return {row["metric"]: row for row in rows}


def test_compression_summary_reads_verdicts_and_pcqat_per_flavor():
    bench = next(b for b in run_all.BENCHMARKS if b.name == "compression")
    rows = run_all.judge(bench.summarize(fake_compression_json()), [], bench.noise)
    by = _by_metric(rows)
    assert by["80% pruning + int8: accuracy, native vs TFMOT"]["verdict"] == "met"
    assert (
        "99.00% vs 98.50% (+0.50 points)"
        in by["80% pruning + int8: accuracy, native vs TFMOT"]["value"]
    )
    assert by["80% pruning + int8: gzipped size, native / TFMOT"]["verdict"] == "missed"
    assert by["PCQAT int8 .tflite: gzipped size / float32 gzipped"]["verdict"] == "missed"
    assert by["QAT int8 .tflite: accuracy drop vs float32"]["verdict"] == "met"
    # "noisy" is not a failure: the row says so in its value and its verdict.
    step = by["80% pruned fit step time, native / TFMOT (across processes)"]
    assert step["verdict"] == "noisy"
    assert step["met"] is None
    assert step["value"].endswith("(noisy)")
    assert "load average 4.2 > 1.0" in step["noise"]
    latency = by["MobileNet-style LiteRT p50, int8 vs float32 (native QAT, 1 thread)"]
    assert latency["verdict"] == "noisy"
    assert "marked noisy by the script" in latency["noise"]
    # A reference has no target.
    assert (
        by["80% pruned fit step time, TFMOT / unpruned (tf_keras, alternating)"]["verdict"] == "-"
    )
    # PCQAT read back from each flavor's file, not from the comparison.
    native = by["PCQAT int8 .tflite kernels (native, keras3): zeros, int8 values per channel"]
    assert native["verdict"] == "met"
    tfmot = by["PCQAT int8 .tflite kernels (TFMOT, tf_keras): zeros, int8 values per channel"]
    assert tfmot["verdict"] == "missed"
    assert "at most 17 values/channel, 2 kernels" in tfmot["value"]
    assert not any("kernels_in_file" in row["metric"] for row in rows)


def test_compression_quality_rows_are_not_made_noisy_by_load():
    bench = next(b for b in run_all.BENCHMARKS if b.name == "compression")
    reasons = run_all.noise_reasons({"load_1min_before": 4.0}, bench.noise, 2)
    rows = _by_metric(run_all.judge(bench.summarize(fake_compression_json()), reasons, bench.noise))
    assert rows["80% pruning + int8: accuracy, native vs TFMOT"]["verdict"] == "met"
    assert rows["PCQAT int8 .tflite: gzipped size / float32 gzipped"]["verdict"] == "missed"
    assert rows["80% pruned fit step time, native / TFMOT (across processes)"]["verdict"] == "noisy"
    assert bench.noise.max_attempts == 1  # minutes per run: never repeated for load


def test_compression_summary_rejects_an_unknown_verdict():
    result = fake_compression_json()
    result["comparison"]["prune_80_accuracy"]["verdict"] = "maybe"
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        run_all._compression(result)


def test_compression_quick_args_are_small():
    bench = next(b for b in run_all.BENCHMARKS if b.name == "compression")
    args = dict(zip(bench.quick_args[::2], bench.quick_args[1::2], strict=True))
    assert args["--rounds"] == "2"
    assert args["--timing-epochs"] == "2"
    assert bench.quick_timeout_s >= 300


def _latency_json(ratios, noisy):
    return {
        "model": "m",
        "noisy": noisy,
        "note": "load average 4.9 on 2 CPUs" if noisy else None,
        "results": [
            {
                "variant": f"v{i}",
                "ratio_p50": ratio,
                "keras_opt_p50_ms": ratio,
                "litert_benchmark_median_ms": 1.0,
            }
            for i, ratio in enumerate(ratios)
        ],
    }


def test_tflite_latency_parity_is_within_five_percent():
    rows = run_all.judge(run_all._tflite_latency(_latency_json([1.04, 0.94], False)), [], None)
    assert [r["verdict"] for r in rows] == ["met", "missed"]
    assert rows[0]["target"] == "0.95 - 1.05"


def test_tflite_latency_noisy_field_marks_rows_noisy():
    rows = run_all.judge(run_all._tflite_latency(_latency_json([1.0, 1.4], True)), [], None)
    assert [r["verdict"] for r in rows] == ["noisy", "noisy"]
    assert all(r["value"].endswith("(noisy)") for r in rows)
    assert "load average 4.9" in rows[0]["noise"]


def test_every_benchmark_script_exists():
    for bench in run_all.BENCHMARKS:
        assert os.path.isfile(os.path.join(ROOT, "benchmarks", bench.script)), bench.script


def test_markdown_has_the_compression_table_per_engine():
    result = fake_compression_json()
    for flavor, acc in (("keras3", 0.99), ("tf_keras", 0.985)):
        result[flavor]["baseline_float32"] = {"accuracy": 0.9925, "gzipped_bytes": 1000}
        result[flavor]["qat_int8"] = {"accuracy": acc, "gzipped_bytes": 270}
        result[flavor]["pcqat_int8"].update(accuracy=acc, gzipped_bytes=120)
    bench = next(b for b in run_all.BENCHMARKS if b.name == "compression")
    report = {
        "date": "d",
        "quick": False,
        "note": None,
        "machine": {
            "cores": 2,
            "cpu_model": "cpu",
            "platform": "p",
            "python": "3",
            "load_average_1min_at_start": 4.0,
        },
        "versions": {},
        "benchmarks": {
            "compression": {
                "script": "benchmarks/compression.py",
                "args": [],
                "flavor": "keras3 + tf_keras",
                "seconds": 1.0,
                "status": "ok",
                "result": result,
                "rows": run_all.judge(bench.summarize(result), [], bench.noise),
            }
        },
    }
    text = run_all.render_markdown(report)
    assert "| float32 | 99.25 | 99.25 | 1.000 | 1.000 |" in text
    assert "| QAT int8 | 99.00 | 98.50 | 0.270 | 0.270 |" in text
    assert "| PCQAT int8 (50%, 8 clusters) | 99.00 | 98.50 | 0.120 | 0.120 |" in text
    assert "(noisy) | t | noisy |" in text  # a script-noisy row: "(noisy)" and its verdict
    assert "| compression | keras3 + tf_keras | 80% pruned fit step time" in text


def fake_aeq_json():
    checks = {
        "int4_weights_size_vs_int8_digits": {"value": 0.61, "target": "<= 0.65", "met": True},
        "int4_weights_size_vs_int8_mobilenet": {"value": 0.56, "target": "<= 0.55", "met": False},
        "mixed_points_below_float32_digits": {"value": None, "target": "<= 0.5", "met": False},
    }
    model = {
        "ratios": {"int4_weights_size_vs_int8": 0.61, "int4_weights_latency_vs_float32": 5.7},
        "timing": "noisy",
        "load_before_after": [5.8, 5.9],
    }
    return {"checks": checks, "digits_cnn": model, "mobilenet_v2": {**model, "timing": "quiet"}}


def test_aeq_variants_summary_judges_sizes_and_keeps_latency_as_reference():
    bench = next(b for b in run_all.BENCHMARKS if b.name == "aeq_variants")
    reasons = run_all.noise_reasons({"load_1min_before": 4.0}, bench.noise, 2)
    rows = run_all.judge(bench.summarize(fake_aeq_json()), reasons, bench.noise)
    assert [r["verdict"] for r in rows] == ["met", "missed", "missed", "noisy", "-"]
    assert rows[0]["value"] == "0.610x"
    assert rows[2]["value"] == "not measured"
    assert rows[3]["value"].endswith("(noisy)")
    assert "load average 5.90 > 1.0" in rows[3]["noise"]


def test_render_only_folds_a_benchmark_run_on_its_own(tmp_path):
    report = {
        "date": "d",
        "quick": False,
        "note": None,
        "machine": {
            "cores": 2,
            "cpu_model": "cpu",
            "platform": "p",
            "python": "3",
            "load_average_1min_at_start": 0.2,
        },
        "versions": {},
        "benchmarks": {},
    }
    (tmp_path / "results").mkdir()
    (tmp_path / "results.json").write_text(json.dumps(report))
    (tmp_path / "results" / "aeq_variants.json").write_text(json.dumps(fake_aeq_json()))
    out = run_all.rerender(str(tmp_path))
    entry = out["benchmarks"]["aeq_variants"]
    assert entry["status"] == "ok"
    assert entry["rerun"] == "result from a run of the script on its own, not by run_all"
    assert entry["noise"] == ["run on its own: no load recorded by run_all"]
    assert [r["verdict"] for r in entry["rows"]][:3] == ["met", "missed", "missed"]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| aeq_variants | keras3 | AEQ int4 weight-only file / converter int8 (digits)" in text
    assert json.loads((tmp_path / "results.json").read_text())["benchmarks"]["aeq_variants"]
