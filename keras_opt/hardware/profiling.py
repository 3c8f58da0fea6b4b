"""Profile a few training steps for TensorBoard's Profile tab, in one call.

``profile_steps`` runs a couple of untimed warm-up steps (tracing, memory
allocation), then traces ``steps`` training steps with ``tf.profiler`` and
writes the trace under ``logdir/plugins/profile/<run>/``. Open it with
``tensorboard --logdir <logdir>`` → Profile: the trace viewer and the
input-pipeline analyser show where each step's time goes.

Viewing needs the optional ``tensorboard-plugin-profile`` package, installed
with ``pip install keras-opt[profile]``.

Example:
    >>> from keras_opt.hardware import profile_steps
    >>> profile_steps(model, dataset, steps=5, logdir="logs/profile")  # doctest: +SKIP
    'logs/profile/plugins/profile/2026_01_01_12_00_00'
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
from typing import Any

import tensorflow as tf

from keras_opt import _validation as v
from keras_opt import backend
from keras_opt._state import ModelSnapshot

logger = logging.getLogger(__name__)

__all__ = ["profile_steps", "profiler_plugin_available"]

_PLUGIN_MODULES = ("tensorboard_plugin_profile", "xprof")
INSTALL_HINT = (
    "TensorBoard's Profile tab needs the tensorboard-plugin-profile package. Please install it "
    "with `pip install keras-opt[profile]` (or `pip install tensorboard-plugin-profile`), or "
    "pass `require_plugin=False` to write the trace anyway."
)


def profiler_plugin_available() -> bool:
    """True when TensorBoard's profile plugin is installed.

    Returns:
        Boolean.

    Example:
        >>> from keras_opt.hardware.profiling import profiler_plugin_available
        >>> profiler_plugin_available() in (True, False)
        True
    """
    return any(importlib.util.find_spec(name) is not None for name in _PLUGIN_MODULES)


def profile_steps(
    model: Any,
    dataset: tf.data.Dataset,
    steps: int = 5,
    logdir: str = "logs/profile",
    warmup: int = 2,
    require_plugin: bool = True,
    restore: bool = True,
) -> str:
    """Trace ``steps`` training steps of ``model`` for TensorBoard's profile plugin.

    Args:
        model: A compiled Keras model of the flavor in use.
        dataset: A batched ``tf.data.Dataset`` of ``(x, y)`` with at least
            ``warmup + steps`` batches.
        steps: Integer >= 1. Steps traced.
        logdir: String. TensorBoard log directory.
        warmup: Integer >= 0. Untraced steps first.
        require_plugin: Boolean. Raise if tensorboard-plugin-profile is missing.
        restore: Boolean. Put weights and optimizer state back afterwards.

    Returns:
        String: the run directory holding the trace (``*.xplane.pb``).

    Raises:
        ImportError: if the plugin is missing and ``require_plugin`` is True
            (with the install command).
        TypeError: if ``model`` or ``dataset`` has the wrong type.
        ValueError: on bad counts or a too-short dataset.

    Example:
        >>> run_dir = profile_steps(model, dataset, steps=5)  # doctest: +SKIP
    """
    if require_plugin and not profiler_plugin_available():
        raise ImportError(INSTALL_HINT)
    backend.check_model(model)
    if not isinstance(dataset, tf.data.Dataset):
        v.fail("dataset", "a batched tf.data.Dataset", type(dataset), exc=TypeError)
    v.integer("steps", steps, minimum=1)
    v.integer("warmup", warmup, minimum=0)
    if not isinstance(logdir, (str, os.PathLike)) or not str(logdir):
        v.fail("logdir", "a non-empty path", logdir, exc=TypeError)
    batches = list(dataset.take(warmup + steps))
    if len(batches) < warmup + steps:
        v.fail(
            "dataset",
            f"at least warmup + steps = {warmup + steps} batches long",
            f"{len(batches)} batches",
            hint="Use `dataset.repeat()` or lower `steps`",
        )
    state = ModelSnapshot.take(model) if restore else None
    logdir = str(logdir)
    before = set(glob.glob(os.path.join(logdir, "plugins", "profile", "*")))
    try:
        for batch in batches[:warmup]:
            model.train_on_batch(*backend.keras.utils.unpack_x_y_sample_weight(batch))
        tf.profiler.experimental.start(logdir)
        try:
            for step, batch in enumerate(batches[warmup:]):
                with tf.profiler.experimental.Trace("train", step_num=step, _r=1):
                    model.train_on_batch(*backend.keras.utils.unpack_x_y_sample_weight(batch))
        finally:
            tf.profiler.experimental.stop()
    finally:
        if state is not None:
            state.restore()
    runs = sorted(set(glob.glob(os.path.join(logdir, "plugins", "profile", "*"))) - before)
    run_dir = runs[-1] if runs else os.path.join(logdir, "plugins", "profile")
    logger.info(
        "profile_steps: %d steps traced to %s (tensorboard --logdir %s).", steps, run_dir, logdir
    )
    return run_dir
