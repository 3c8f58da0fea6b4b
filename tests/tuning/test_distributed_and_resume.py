"""KerasTuner's chief/worker mode on 127.0.0.1, and resuming an interrupted search."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from keras_opt.backend import keras
from keras_opt.callbacks import LRScheduler
from keras_opt.schedules import OneCycle
from keras_opt.tuning import RandomSearch, trial_rows
from tests.tuning.conftest import build_dense

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_chief_and_two_workers_on_loopback(tmp_path):
    port = _free_port()
    procs = {}
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            env = dict(
                os.environ,
                KERASTUNER_TUNER_ID=tuner_id,
                KERASTUNER_ORACLE_IP="127.0.0.1",
                KERASTUNER_ORACLE_PORT=str(port),
                TF_CPP_MIN_LOG_LEVEL="3",
            )
            out = tmp_path / f"{tuner_id}.json"
            log = open(tmp_path / f"{tuner_id}.log", "w")  # noqa: SIM115
            procs[tuner_id] = (
                subprocess.Popen(
                    [
                        sys.executable,
                        os.path.join(HERE, "_kt_worker.py"),
                        str(tmp_path / "p"),
                        str(out),
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
                out,
            )
            if tuner_id == "chief":
                time.sleep(2)  # let the oracle server bind before workers connect
        deadline = time.time() + 300
        for tuner_id in ("tuner0", "tuner1", "chief"):
            proc, log, _ = procs[tuner_id]
            proc.wait(timeout=max(deadline - time.time(), 1))
            log.close()
            assert proc.returncode == 0, (tmp_path / f"{tuner_id}.log").read_text()[-3000:]
    finally:
        for proc, log, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    chief = json.loads(procs["chief"][2].read_text())
    trials = chief["trials"]
    assert len(trials) == 4
    for metrics in trials.values():
        assert {"tflite_accuracy", "tflite_size_kb", "deploy_score", "learning_rate"} <= set(
            metrics
        )
        assert metrics["learning_rate"] == pytest.approx(
            OneCycle(1e-2, total_steps=12).lr_at(11), rel=1e-4
        )
    # Both workers ran trials (each trial directory names the worker that built it).
    workers = {json.loads(procs[w][2].read_text())["tuner_id"] for w in ("tuner0", "tuner1")}
    assert workers == {"tuner0", "tuner1"}


class Interrupt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at the end of the n-th fit it sees (like Ctrl-C)."""

    def __init__(self, at_fit: int):
        super().__init__()
        self.at_fit = at_fit

    def on_train_end(self, logs=None):
        Interrupt.fits = getattr(Interrupt, "fits", 0) + 1
        if Interrupt.fits == self.at_fit:
            raise KeyboardInterrupt


class CountFits(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        CountFits.fits = getattr(CountFits, "fits", 0) + 1


def test_interrupted_search_resumes_without_repeating_finished_trials(flat_digits, tmp_path):
    x, y, xv, yv = flat_digits
    kwargs = dict(
        objective="val_accuracy",
        max_trials=3,
        directory=str(tmp_path),
        project_name="resume",
        seed=3,
    )
    Interrupt.fits = 0
    tuner = RandomSearch(build_dense, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        tuner.search(
            x,
            y,
            epochs=1,
            batch_size=100,
            validation_data=(xv, yv),
            verbose=0,
            callbacks=[LRScheduler(OneCycle(1e-2)), Interrupt(at_fit=2)],
        )
    done_before = {r["trial_id"] for r in trial_rows(tuner)}
    assert len(done_before) == 1

    CountFits.fits = 0
    resumed = RandomSearch(build_dense, overwrite=False, **kwargs)
    resumed.search(
        x,
        y,
        epochs=1,
        batch_size=100,
        validation_data=(xv, yv),
        verbose=0,
        callbacks=[LRScheduler(OneCycle(1e-2)), CountFits()],
    )
    rows = trial_rows(resumed)
    assert len(rows) == 3
    assert done_before <= {r["trial_id"] for r in rows}
    assert CountFits.fits == 2  # only the unfinished trials ran
