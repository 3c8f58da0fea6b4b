"""The one place that decides which Keras keras_opt talks to.

TensorFlow 2.21 ships two Keras flavors:

* **Keras 3** (the ``keras`` package) is what ``tf.keras`` means by default.
* **tf_keras** (Keras 2) is what ``tf.keras`` means when the environment
  variable ``TF_USE_LEGACY_KERAS=1`` is set *before TensorFlow is imported*.
  TFMOT 0.8.1 only accepts tf_keras models.

Their classes are not interchangeable (a Keras 3 ``Callback`` passed to a
tf_keras ``fit`` fails), so every keras_opt module takes ``keras`` from here and
nowhere else. The flavor is read once, when this module is first imported.

Example:
    >>> from keras_opt import backend
    >>> backend.flavor() in ("keras3", "tf_keras")
    True
    >>> model = backend.keras.Sequential([backend.keras.layers.Dense(1)])
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "keras",
    "flavor",
    "is_tf_keras",
    "require_flavor",
    "check_model",
    "FlavorError",
    "LEGACY_ENV_VAR",
]

LEGACY_ENV_VAR = "TF_USE_LEGACY_KERAS"

_TRUE = ("1", "true", "yes", "on")


def _legacy_requested() -> bool:
    return os.environ.get(LEGACY_ENV_VAR, "").strip().lower() in _TRUE


_LEGACY = _legacy_requested()

if _LEGACY:
    import tf_keras as _keras
else:
    import keras as _keras

keras: Any = _keras
"""The Keras module in use: ``keras`` (Keras 3) or ``tf_keras``."""


class FlavorError(RuntimeError):
    """Raised when a feature needs the other Keras flavor.

    The message names the feature, the flavor in use and how to switch.

    Args:
        message: String. The explanation (built by `require_flavor`).

    Example:
        >>> from keras_opt.backend import FlavorError, require_flavor, flavor
        >>> other = "keras3" if flavor() == "tf_keras" else "tf_keras"
        >>> try:
        ...     require_flavor(other, "this feature")
        ... except FlavorError as err:
        ...     print("TF_USE_LEGACY_KERAS" in str(err))
        True
    """


def flavor() -> str:
    """Return the Keras flavor keras_opt resolved at import time.

    Returns:
        ``"tf_keras"`` when ``TF_USE_LEGACY_KERAS=1`` was set before import,
        otherwise ``"keras3"``.

    Example:
        >>> from keras_opt.backend import flavor
        >>> flavor() in ("keras3", "tf_keras")
        True
    """
    return "tf_keras" if _LEGACY else "keras3"


def is_tf_keras() -> bool:
    """Return True when the tf_keras (Keras 2) flavor is in use.

    Returns:
        Boolean.

    Example:
        >>> from keras_opt.backend import is_tf_keras, flavor
        >>> is_tf_keras() == (flavor() == "tf_keras")
        True
    """
    return _LEGACY


def require_flavor(required: str, feature: str) -> None:
    """Raise `FlavorError` unless the Keras flavor in use is ``required``.

    Args:
        required: String. ``"tf_keras"`` or ``"keras3"``.
        feature: String. What needs that flavor, for the message
            (e.g. ``"keras_opt.optimization.prune (TFMOT)"``).

    Returns:
        None.

    Raises:
        ValueError: if ``required`` is not a known flavor.
        FlavorError: if the flavor in use differs.

    Example:
        >>> from keras_opt.backend import require_flavor, flavor
        >>> require_flavor(flavor(), "this example")
    """
    if required not in ("tf_keras", "keras3"):
        raise ValueError(
            f"Argument `required` must be 'tf_keras' or 'keras3'. Received: required={required!r}"
        )
    if required == flavor():
        return
    if required == "tf_keras":
        how = (
            f"Set the environment variable {LEGACY_ENV_VAR}=1 before TensorFlow is imported "
            f"(e.g. `{LEGACY_ENV_VAR}=1 python train.py`, or `os.environ['{LEGACY_ENV_VAR}'] = "
            "'1'` as the first line of your script) and build the model with `tf.keras` or "
            "`tf_keras`."
        )
    else:
        how = (
            f"Unset {LEGACY_ENV_VAR} (or set it to 0) before TensorFlow is imported and build "
            "the model with `keras`."
        )
    raise FlavorError(
        f"{feature} needs the {required} Keras flavor, but keras_opt is running with "
        f"{flavor()}. {how}"
    )


def check_model(model: object, argument: str = "model") -> None:
    """Raise a clear `TypeError` if ``model`` is not a model of the flavor in use.

    Mixing flavors (a Keras 3 model while ``TF_USE_LEGACY_KERAS=1``, or the
    reverse) is the most common source of obscure errors, so keras_opt checks
    it at every public entry point.

    Args:
        model: Object. The value to check.
        argument: String. The argument name to show in the message.

    Returns:
        None.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model`` of the flavor in use.

    Example:
        >>> from keras_opt.backend import keras, check_model
        >>> check_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    """
    if isinstance(model, keras.Model):
        return
    module = type(model).__module__ or ""
    other = None
    if module.startswith("tf_keras"):
        other = "tf_keras"
    elif module.startswith("keras"):
        other = "keras3"
    if other is not None and other != flavor():
        hint = (
            f" It is a {other} model, but keras_opt is running with {flavor()}: build the "
            f"model with `{'tf_keras' if flavor() == 'tf_keras' else 'keras'}`"
            + (
                f", or set {LEGACY_ENV_VAR}=1 before importing TensorFlow."
                if other == "tf_keras"
                else f", or unset {LEGACY_ENV_VAR} before importing TensorFlow."
            )
        )
    else:
        hint = " Pass a built Keras model (Sequential, Functional or subclassed)."
    raise TypeError(
        f"Argument `{argument}` must be a {flavor()} `keras.Model`. "
        f"Received: {argument}={type(model).__module__}.{type(model).__name__}.{hint}"
    )
