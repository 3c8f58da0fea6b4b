"""Story: a KerasTuner search with keras_opt callbacks, scored on the TFLite artifact.

Each trial trains with a one-cycle schedule, is exported to a float16 ``.tflite``
and measured (size, LiteRT latency, accuracy of the file). Trials over the size
budget rank below every trial within it; the Pareto front keeps the trade-off;
the winner is exported into ``tflite_models/`` like any model. Runs in both
Keras flavors (under tf_keras, KerasTuner itself would reject the models).

    python examples/keras_tuner_search.py [--trials 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sklearn.datasets import load_digits  # noqa: E402

from keras_opt.backend import flavor, keras  # noqa: E402
from keras_opt.callbacks import LRScheduler  # noqa: E402
from keras_opt.schedules import OneCycle  # noqa: E402
from keras_opt.tuning import Deployment, RandomSearch, export_best, pareto_front  # noqa: E402


def build(hp):
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(hp.Choice("units", [8, 32, 128]), activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def main(trials: int = 3, epochs: int = 3, out: str | None = None) -> list[dict]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    deployment = Deployment(
        eval_data=(x_test, y_test), variant="float16", max_size_kb=12.0, isolation="none"
    )
    with tempfile.TemporaryDirectory() as directory:
        tuner = RandomSearch(
            build,
            objective=deployment.objective,  # maximize deploy_score
            deployment=deployment,
            max_trials=trials,
            directory=directory,
            project_name="digits",
            seed=0,
        )
        tuner.search(
            x_train,
            y_train,
            epochs=epochs,
            verbose=0,
            callbacks=[LRScheduler(OneCycle(max_lr=1e-2))],
        )
        print(f"Keras flavor: {flavor()}")
        front = pareto_front(tuner)
        for row in front:
            m = row["metrics"]
            print(
                f"units={row['hyperparameters']['units']:4d}  "
                f"tflite accuracy {m['tflite_accuracy']:.3f}  size {m['tflite_size_kb']:.1f} KB  "
                f"p50 {m['tflite_latency_ms']:.4f} ms  score {m['deploy_score']:.3f}"
            )
        best = tuner.get_best_hyperparameters(1)[0].values
        print("best within the 12 KB budget:", best)
        out = out or os.path.join(directory, "best")
        result = export_best(
            tuner, out, eval_data=(x_test, y_test), variants=["float16"], isolation="none"
        )
        print(result.format_table())
    return front


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="tflite_models/digits_tuned")
    args = parser.parse_args()
    main(args.trials, args.epochs, args.out)
