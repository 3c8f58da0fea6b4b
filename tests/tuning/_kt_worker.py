"""One process of a distributed KerasTuner search (run by test_distributed_and_resume.py).

Environment: KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT
(KerasTuner's own chief/worker mode) and argv[1] = project directory,
argv[2] = result JSON path.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from keras_opt.callbacks import LRScheduler  # noqa: E402
from keras_opt.schedules import OneCycle  # noqa: E402
from keras_opt.tuning import Deployment, RandomSearch  # noqa: E402
from tests.tuning.conftest import build_dense  # noqa: E402


def main(directory: str, out: str) -> None:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    deployment = Deployment(
        eval_data=(x[1200:], y[1200:]), variant="float16", runs=3, isolation="none"
    )
    tuner = RandomSearch(
        build_dense,
        objective=deployment.objective,
        deployment=deployment,
        max_trials=4,
        directory=directory,
        project_name="dist",
        seed=1,
    )
    tuner.search(
        x[:1200],
        y[:1200],
        epochs=1,
        batch_size=100,
        callbacks=[LRScheduler(OneCycle(1e-2))],
        verbose=0,
    )
    trials = (
        {
            t.trial_id: {k: t.metrics.get_last_value(k) for k in t.metrics.metrics}
            for t in tuner.oracle.trials.values()
        }
        if os.environ.get("KERASTUNER_TUNER_ID") == "chief"
        else {}
    )
    with open(out, "w") as f:
        json.dump({"tuner_id": os.environ.get("KERASTUNER_TUNER_ID"), "trials": trials}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
