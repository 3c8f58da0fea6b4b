"""Keep the terminal readable: silence TensorFlow, absl and converter chatter."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator


def quiet_tensorflow() -> None:
    """Lower TensorFlow's C++ and Python log levels (call before importing TF)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    for name in ("tensorflow", "absl", "h5py", "tf_keras", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules:
        # absl prints "All log messages before absl::InitializeLog()..." straight
        # to file descriptor 2 while TensorFlow loads, whatever the log level.
        with redirect_fds():
            import tensorflow  # noqa: F401

            import keras_opt.backend  # noqa: F401


@contextlib.contextmanager
def redirect_fds(log_path: str | None = None) -> Iterator[None]:
    """Send the process's stdout/stderr file descriptors to ``log_path`` (or /dev/null).

    The TFLite converter and TensorFlow's C++ runtime write to file descriptors
    1 and 2 directly, so ``contextlib.redirect_stdout`` does not catch them.
    Python-level output printed inside the block is redirected too.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    target = open(log_path or os.devnull, "ab")  # noqa: SIM115
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(target.fileno(), 1)
        os.dup2(target.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        target.close()
