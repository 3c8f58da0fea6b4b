"""Read a ``.keras`` file without TensorFlow: which flavor wrote it, is it sound, its loss.

A ``.keras`` file is a zip archive holding ``metadata.json`` (the Keras
version that saved it), ``config.json`` and ``model.weights.h5``. Keras 3 and
tf_keras 2.21 cannot load each other's files, so the CLI reads the version
before TensorFlow loads and picks the flavor that wrote the file.

Example:
    >>> import json, tempfile, zipfile
    >>> with tempfile.NamedTemporaryFile(suffix=".keras") as f:
    ...     with zipfile.ZipFile(f.name, "w") as z:
    ...         z.writestr("metadata.json", json.dumps({"keras_version": "2.21.0"}))
    ...         z.writestr("config.json", "{}")
    ...     saved_flavor(f.name)
    'tf_keras'
"""

from __future__ import annotations

import json
import zipfile
from typing import Any

__all__ = ["saved_flavor", "keras_file_problem", "model_config", "compile_config"]


def _read_json(path: str, member: str) -> dict[str, Any]:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read(member))


def saved_flavor(path: str) -> str | None:
    """Flavor that wrote a ``.keras`` file: ``"keras3"``, ``"tf_keras"``, or None (not one).

    None means the file is not a zip archive with ``config.json``: not a Keras model.
    """
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                return None
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    return "keras3" if str(meta.get("keras_version", "3")).startswith("3") else "tf_keras"


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def keras_file_problem(path: str) -> str | None:
    """What is wrong with a ``.keras`` (or ``.h5``) model file, or None if it looks sound.

    Checks the container without TensorFlow: a ``.keras`` file must be a readable zip
    archive with a valid ``config.json`` and ``model.weights.h5``; an ``.h5`` file must
    start with the HDF5 signature. Keras itself reports a corrupt ``.keras`` file as
    "File not found", which misleads for a file that exists.

    Args:
        path: String. The model file.

    Returns:
        None, or a short description of the problem (e.g. ``"not a zip archive"``).

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(suffix=".keras") as f:
        ...     _ = f.write(b"not a zip"); f.flush()
        ...     keras_file_problem(f.name)
        'not a zip archive (a .keras file is a zip of config.json, metadata.json and model.weights.h5)'
    """  # noqa: E501
    if not isinstance(path, str):
        raise TypeError(f"Argument `path` must be a string. Received: path={path!r}")
    if path.endswith(".h5"):
        with open(path, "rb") as f:
            head = f.read(8)
        return None if head == _HDF5_SIGNATURE else "not an HDF5 file (bad signature)"
    if not zipfile.is_zipfile(path):
        return (
            "not a zip archive (a .keras file is a zip of config.json, metadata.json and "
            "model.weights.h5)"
        )
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
            if missing:
                return f"the zip archive has no {' or '.join(missing)}"
            bad = z.testzip()
            if bad is not None:
                return f"the archive member {bad} is corrupt (CRC mismatch)"
            json.loads(z.read("config.json"))
    except zipfile.BadZipFile as err:
        return f"a damaged zip archive ({err})"
    except ValueError as err:
        return f"its config.json is not valid JSON ({err})"
    except (OSError, EOFError) as err:
        return f"the archive cannot be read ({err})"
    return None


def model_config(path: str) -> dict[str, Any]:
    """The model's ``config.json`` (empty when it cannot be read)."""
    try:
        return _read_json(path, "config.json")
    except (zipfile.BadZipFile, OSError, ValueError, KeyError):
        return {}


def compile_config(path: str) -> dict[str, Any]:
    """The ``compile_config`` saved in a ``.keras`` file (empty when it was not compiled)."""
    try:
        return dict(model_config(path).get("compile_config") or {})
    except (TypeError, ValueError):
        return {}
