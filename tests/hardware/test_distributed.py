"""Real distributed runs: MirroredStrategy over two logical CPUs, and two workers on 127.0.0.1.

Both run in fresh processes (see ``_workers.py``): logical devices and
collective ops must be configured before TensorFlow initializes its devices.
Every process is bounded by a timeout and killed if anything fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_opt import backend

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240


def _env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONWARNINGS"] = "ignore"
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env


def _free_ports(n):
    """n distinct free TCP ports on the loopback interface."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _run_all(commands, envs, tmp_path):
    """Start every command, wait for all within TIMEOUT_S; kill all on any failure."""
    procs, logs = [], []
    try:
        for i, (cmd, env) in enumerate(zip(commands, envs, strict=True)):
            log = open(tmp_path / f"proc{i}.log", "w+")  # noqa: SIM115 - closed below
            logs.append(log)
            procs.append(
                subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        raise
    finally:
        tails = []
        for log in logs:
            log.seek(0)
            tails.append(log.read()[-3000:])
            log.close()
    if any(codes):
        pytest.fail(f"exit codes {codes}; output tails:\n" + "\n-----\n".join(tails))


def test_mirrored_two_logical_cpus_matches_single_device_training(tmp_path):
    out = tmp_path / "mirrored.json"
    cmd = [sys.executable, "-m", "tests.hardware._workers", "mirrored", str(out)]
    _run_all([cmd], [_env()], tmp_path)
    result = json.loads(out.read_text())
    for kind in ("sequential", "functional"):
        r = result[kind]
        assert r["replicas"] == 2
        assert r["weights_moved"] > 0.1  # training really happened
        assert r["max_weight_diff"] < 1e-4  # ... and gave the single-device weights
        np.testing.assert_allclose(r["loss_multi"], r["loss_single"], rtol=1e-5)
        # OneCycle drove LR and momentum through the strategy's variables
        np.testing.assert_allclose(r["lr_multi"], r["lr_single"], rtol=1e-6)
        assert r["momentum_multi"][0] < r["momentum_multi"][1] <= 0.95
        assert "strategy: MirroredStrategy | replicas: 2" in r["summary"]


def test_two_process_multi_worker_agrees_on_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    commands, envs = [], []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        out = tmp_path / f"worker{index}.npz"
        commands.append([sys.executable, "-m", "tests.hardware._workers", "multi_worker", str(out)])
        envs.append(_env({"TF_CONFIG": json.dumps(tf_config)}))
    _run_all(commands, envs, tmp_path)
    results = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    metas = [json.loads(str(r["meta"])) for r in results]
    for meta in metas:
        assert meta["replicas"] == 2
        assert "MultiWorkerMirroredStrategy" in meta["summary"]
        losses = meta["history"]["loss"]
        assert np.all(np.isfinite(losses))
        assert losses[-1] < losses[0]
        assert meta["history"]["momentum"][0] < meta["history"]["momentum"][1]
    expected = (
        "CollectiveAllReduceStrategy"
        if backend.is_tf_keras()
        else ("_Keras3MultiWorkerMirroredStrategy")
    )
    assert metas[0]["strategy"] == metas[1]["strategy"] == expected
    keys = sorted(k for k in results[0].files if k.startswith("arr_"))
    assert len(keys) > 4
    for k in keys:
        np.testing.assert_allclose(results[0][k], results[1][k], rtol=0, atol=1e-6)
    assert metas[0]["history"] == metas[1]["history"]
