"""The one place where keras_opt asks TensorFlow which devices exist.

Every other module of `keras_opt.hardware` calls `detect_devices`, so the
test suite fakes a TPU or GPUs at this one boundary.

TPUs are only probed when there is a sign of one (``TPU_NAME``,
``COLAB_TPU_ADDR``, ``KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS`` or a ``/dev/accel*`` /
``/dev/vfio`` device of a TPU VM): ``TPUClusterResolver`` otherwise asks the
Google Cloud metadata server, which is slow or unreachable elsewhere.

Example:
    >>> from keras_opt.hardware.devices import detect_devices
    >>> detect_devices().kind in ("tpu", "gpu", "cpu")
    True
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any

import tensorflow as tf

__all__ = ["Devices", "detect_devices"]

_TPU_ENV_VARS = ("TPU_NAME", "COLAB_TPU_ADDR", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS")


@dataclasses.dataclass(frozen=True)
class Devices:
    """What this machine has, as far as training is concerned.

    Attributes:
        kind: String. ``"tpu"``, ``"gpu"`` or ``"cpu"``: the best accelerator.
        gpus: Tuple of GPU device names (``"/physical_device:GPU:0"``, ...).
        cpus: Tuple of CPU device names.
        gpu_compute_capabilities: Tuple of ``(major, minor)`` per GPU, or None
            where TensorFlow does not report it.
        tpu: String or None. The TPU address hint (``"local"`` on a TPU VM).

    Example:
        >>> from keras_opt.hardware.devices import Devices
        >>> Devices(kind="cpu", cpus=("/physical_device:CPU:0",)).describe()
        '1 x CPU'
    """

    kind: str
    gpus: tuple[str, ...] = ()
    cpus: tuple[str, ...] = ()
    gpu_compute_capabilities: tuple[tuple[int, int] | None, ...] = ()
    tpu: str | None = None

    def describe(self) -> str:
        """Short human description, e.g. ``"2 x GPU (cc 8.0)"``.

        Returns:
            String.
        """
        if self.kind == "tpu":
            return f"TPU ({self.tpu or 'auto'})"
        if self.kind == "gpu":
            caps = sorted({f"{c[0]}.{c[1]}" for c in self.gpu_compute_capabilities if c})
            suffix = f" (cc {', '.join(caps)})" if caps else ""
            return f"{len(self.gpus)} x GPU{suffix}"
        return f"{max(len(self.cpus), 1)} x CPU"

    def min_compute_capability(self) -> tuple[int, int] | None:
        """Lowest GPU compute capability (the one that limits the whole job).

        Returns:
            ``(major, minor)`` or None if unknown or there is no GPU.
        """
        caps = [c for c in self.gpu_compute_capabilities if c is not None]
        return min(caps) if caps else None


# ----- the boundary (replace these in tests) -----------------------------------------------
def _list_physical(device_type: str) -> list[Any]:
    return list(tf.config.list_physical_devices(device_type))


def _gpu_details(device: Any) -> dict[str, Any]:
    try:
        return dict(tf.config.experimental.get_device_details(device))
    except (ValueError, RuntimeError, tf.errors.OpError):  # pragma: no cover - real GPUs only
        return {}


def _tpu_hint() -> str | None:
    for name in _TPU_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name] if name == "TPU_NAME" else ""
    if glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"):
        return "local"
    return None


# -------------------------------------------------------------------------------------------
def detect_devices() -> Devices:
    """List this machine's devices (TPU hint, GPUs with compute capability, CPUs).

    Returns:
        A `Devices`.

    Example:
        >>> from keras_opt.hardware.devices import detect_devices
        >>> devices = detect_devices()
        >>> len(devices.cpus) >= 1
        True
    """
    cpus = tuple(d.name for d in _list_physical("CPU"))
    tpu = _tpu_hint()
    if tpu is not None:
        return Devices(kind="tpu", cpus=cpus, tpu=tpu)
    gpu_devices = _list_physical("GPU")
    if gpu_devices:
        caps = []
        for device in gpu_devices:
            cc = _gpu_details(device).get("compute_capability")
            caps.append((int(cc[0]), int(cc[1])) if cc else None)
        return Devices(
            kind="gpu",
            gpus=tuple(d.name for d in gpu_devices),
            cpus=cpus,
            gpu_compute_capabilities=tuple(caps),
        )
    return Devices(kind="cpu", cpus=cpus)
