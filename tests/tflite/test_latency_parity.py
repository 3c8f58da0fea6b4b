"""keras_opt's latency protocol is litert-benchmark's, and both agree on a real file.

Timing on a shared 2-core machine is noisy: the ratio is bounded loosely here; the
5% figure comes from ``benchmarks/tflite_latency.py`` (alternating repeats).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from keras_opt.backend import keras
from keras_opt.tflite import benchmark, export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conv_file(tmp_path_factory):
    """A float32 conv net on 64x64x3 (~2 ms a run: well above the tool's 0.01 ms rounding)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 3), name="image")
    x = inputs
    for filters in (16, 32, 32):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x), name="conv64")
    out = tmp_path_factory.mktemp("parity")
    result = export(model, out, variants=["float32"], isolation="none", runs=2, warmup=1)
    assert result.failed == {}
    return result.path("float32")


def _litert_benchmark(path, threads, runs, warmup, tmp_path):
    out = tmp_path / "tool.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ai_edge_litert.tools.benchmark_litert_model",
            f"--model={path}",
            f"--num_threads={threads}",
            f"--num_runs={runs}",
            f"--warmup_runs={warmup}",
            f"--result_json={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_same_protocol_and_close_latency_as_litert_benchmark(conv_file, tmp_path):
    threads, runs, warmup = 1, 15, 3
    ours_p50, tool_p50 = [], []
    for _ in range(3):  # alternate, and compare the least disturbed repeat of each
        ours = benchmark(conv_file, threads=threads, runs=runs, warmup=warmup)
        tool = _litert_benchmark(conv_file, threads, runs, warmup, tmp_path)
        lat = tool["latency"]
        ours_p50.append(ours.latency_ms["p50"])
        tool_p50.append(lat["median_ms"])
        # Same protocol, read back from both results.
        assert (ours.threads, ours.warmup, ours.runs) == (
            tool["num_threads"],
            lat["num_warmup_runs"],
            lat["num_runs"],
        )
    assert ours.input_data == "random uniform(-1, 1), seed 0"  # the tool's distribution
    assert len(ours.samples_ms) == runs
    assert ours.latency_ms["p50"] == pytest.approx(float(np.median(ours.samples_ms)))
    assert min(tool_p50) >= 0.2  # large enough for the tool's 0.01 ms rounding
    ratio = min(ours_p50) / min(tool_p50)
    assert 0.5 <= ratio <= 2.0, (ours_p50, tool_p50)


def test_warmup_includes_the_first_run(conv_file):
    r = benchmark(conv_file, runs=3, warmup=2)
    assert r.first_ms > 0
    assert r.warmup_ms > 0
    cold = benchmark(conv_file, runs=3, warmup=0)
    assert cold.warmup_ms == 0.0
    assert cold.first_ms == cold.samples_ms[0]  # no warmup: the first timed run
    with pytest.raises(ValueError, match="`seed` must be >= 0"):
        benchmark(conv_file, runs=1, seed=-1)
    with pytest.raises(TypeError, match="`use_xnnpack` must be a boolean"):
        benchmark(conv_file, runs=1, use_xnnpack="yes")
