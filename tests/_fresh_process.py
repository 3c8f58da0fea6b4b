"""Run a test script in a fresh interpreter, optionally on two logical CPUs.

Logical devices must be configured before TensorFlow initializes its runtime,
so MirroredStrategy tests run their checks in a new process. The script
prints one line ``RESULT <json>``; `run_script` returns the decoded JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Prepended by ``two_cpus=True``: split the CPU into two logical devices first.
TWO_LOGICAL_CPUS = """
import tensorflow as tf
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""


def run_script(
    script: str, *, legacy: bool | None = None, two_cpus: bool = False, timeout: int = 240
) -> dict:
    """Run ``script`` from the repository root; return the JSON of its ``RESULT`` line.

    ``legacy`` sets ``TF_USE_LEGACY_KERAS`` (None: this session's flavor).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if legacy is not None:
        env["TF_USE_LEGACY_KERAS"] = "1" if legacy else "0"
    source = (TWO_LOGICAL_CPUS if two_cpus else "") + script
    proc = subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert len(lines) == 1, proc.stdout[-3000:]
    return json.loads(lines[0][len("RESULT") :])
