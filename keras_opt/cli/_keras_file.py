"""Read a ``.keras`` file without TensorFlow, and move a Keras 3 file to tf_keras.

A ``.keras`` file is a zip archive holding ``metadata.json`` (the Keras
version that saved it), ``config.json`` and ``model.weights.h5``. Keras 3 and
tf_keras 2.21 cannot load each other's files: the model classes live in
different modules, Keras 3 writes dtype policies as objects, ``batch_shape``
instead of ``batch_input_shape`` and a new ``inbound_nodes`` format. The
weights file has the same layout in both (``layers/<name>/vars/<i>``), so
`keras3_to_tf_keras` rewrites the config for tf_keras and keeps the weights:
built-in layers come across unchanged; custom layers do not.

Example:
    >>> from keras_opt.cli._keras_file import translate_config
    >>> layer = {"class_name": "Add", "config": {"name": "add", "dtype": {
    ...     "class_name": "DTypePolicy", "config": {"name": "float32"}}},
    ...     "inbound_nodes": [{"args": [[
    ...         {"class_name": "__keras_tensor__", "config": {"keras_history": ["a", 0, 0]}},
    ...         {"class_name": "__keras_tensor__", "config": {"keras_history": ["b", 0, 0]}},
    ...     ]], "kwargs": {}}]}
    >>> out = translate_config(layer)
    >>> out["config"]["dtype"], out["inbound_nodes"]
    ('float32', [[['a', 0, 0, {}], ['b', 0, 0, {}]]])
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any

__all__ = [
    "saved_flavor",
    "keras_file_problem",
    "compile_config",
    "translate_config",
    "keras3_to_tf_keras",
]

_MODEL_CLASSES = ("Functional", "Sequential", "Model")


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


def compile_config(path: str) -> dict[str, Any]:
    """The ``compile_config`` saved in a ``.keras`` file (empty when it was not compiled)."""
    try:
        return dict(_read_json(path, "config.json").get("compile_config") or {})
    except (zipfile.BadZipFile, OSError, ValueError, KeyError):
        return {}


def _tensors(value: Any) -> list[list[Any]]:
    """``keras_history`` of every Keras tensor in a node's args, in order."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return [list(value["config"]["keras_history"])]
    if isinstance(value, (list, tuple)):
        return [h for v in value for h in _tensors(v)]
    return []


def _node(node: Any) -> Any:
    if not isinstance(node, dict):  # already in the tf_keras format
        return node
    kwargs = {k: v for k, v in node.get("kwargs", {}).items() if v is not None}
    if _tensors(kwargs):
        raise ValueError("a layer is called with a tensor keyword argument")
    return [[*h, kwargs] for h in _tensors(node.get("args", []))]


def translate_config(obj: dict[str, Any], accepted: Any = None) -> dict[str, Any]:
    """Rewrite one serialized Keras 3 layer or model (recursively) for tf_keras.

    Args:
        obj: Dict. A serialized layer, model, initializer ... (``class_name``, ``config``).
        accepted: Callable ``(module, class_name) -> set of argument names or None``;
            when given, config keys outside the set are dropped (Keras 3 additions).

    Returns:
        The rewritten dict (the input is not modified).
    """
    obj = dict(obj)
    name = obj.get("class_name")
    cfg = obj.get("config")
    if not isinstance(cfg, dict):
        return obj
    cfg = {
        k: translate_config(v, accepted) if isinstance(v, dict) and "class_name" in v else v
        for k, v in cfg.items()
    }
    if name in _MODEL_CLASSES:
        obj["module"] = "keras" if name == "Sequential" else "tf_keras.src.engine.functional"
        obj["registered_name"] = None if name == "Sequential" else name
        for key in ("input_layers", "output_layers"):
            if cfg.get(key) and isinstance(cfg[key][0], str):
                cfg[key] = [cfg[key]]
        if "layers" in cfg:
            cfg["layers"] = [translate_config(layer, accepted) for layer in cfg["layers"]]
    dtype = cfg.get("dtype")
    if isinstance(dtype, dict):
        cfg["dtype"] = (dtype.get("config") or {}).get("name", "float32")
    if name == "InputLayer" and "batch_shape" in cfg:
        cfg["batch_input_shape"] = cfg.pop("batch_shape")
    known = accepted(obj.get("module"), name) if accepted and name not in _MODEL_CLASSES else None
    if known is not None:
        cfg = {k: v for k, v in cfg.items() if k in known}
    obj["config"] = cfg
    if "inbound_nodes" in obj:
        obj["inbound_nodes"] = [_node(n) for n in obj["inbound_nodes"]]
    return obj


_LAYER_KWARGS = {
    "name",
    "trainable",
    "dtype",
    "dynamic",
    "input_dim",
    "input_shape",
    "batch_input_shape",
    "batch_size",
    "weights",
    "activity_regularizer",
    "autocast",
    "implementation",
}


def _tf_keras_arguments(module: str | None, class_name: str | None) -> set[str] | None:
    """Argument names tf_keras's class of that name accepts (None: unknown, keep all)."""
    import inspect

    import tf_keras

    namespace = {
        "keras.layers": tf_keras.layers,
        "keras.initializers": tf_keras.initializers,
        "keras.regularizers": tf_keras.regularizers,
        "keras.constraints": tf_keras.constraints,
    }.get(module or "")
    cls = getattr(namespace, class_name or "", None) if namespace is not None else None
    if not isinstance(cls, type):
        return None
    names = set(_LAYER_KWARGS) if module == "keras.layers" else set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names - {"self"}


def keras3_to_tf_keras(path: str, safe_mode: bool = True) -> Any:
    """Load a ``.keras`` file saved by Keras 3 as a tf_keras model (same weights).

    Arguments tf_keras's built-in layers and initializers do not take (Keras 3
    additions such as ``quantization_config`` or ``input_axes``) are dropped.

    Args:
        path: String. The ``.keras`` file.
        safe_mode: Boolean. Passed to ``tf_keras.models.load_model``.

    Returns:
        A tf_keras model (not compiled).

    Raises:
        ValueError, TypeError: when the model uses layers or call patterns tf_keras
            cannot rebuild (custom layers, tensors as keyword arguments).
    """
    import tf_keras

    config = translate_config(_read_json(path, "config.json"), _tf_keras_arguments)
    config.pop("compile_config", None)
    with zipfile.ZipFile(path) as z:
        weights = z.read("model.weights.h5")
    meta = {"keras_version": tf_keras.__version__, "date_saved": "translated from Keras 3"}
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, os.path.basename(path))
        with zipfile.ZipFile(target, "w") as z:
            z.writestr("metadata.json", json.dumps(meta))
            z.writestr("config.json", json.dumps(config))
            z.writestr("model.weights.h5", weights)
        return tf_keras.models.load_model(target, compile=False, safe_mode=safe_mode)
