"""Representative and evaluation data: read it, check it against the model's inputs.

Data may be numpy arrays (one per input: an array, a list or a dict keyed by
input name), a ``tf.data.Dataset``, a generator or a callable returning one.
Elements may be ``x`` or ``(x, y)``; batched or single samples. Everything is
gathered into one numpy array per model input, checked for shape and dtype.

Example:
    >>> import numpy as np
    >>> from keras_opt.tflite._data import InputSpec, collect_inputs
    >>> specs = [InputSpec("image", (8, 8, 1), "float32")]
    >>> xs, y = collect_inputs(np.zeros((4, 8, 8, 1), "float32"), specs)
    >>> xs[0].shape, y is None
    ((4, 8, 8, 1), True)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["InputSpec", "input_specs", "collect_inputs", "load_npz"]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Name, per-sample shape (no batch axis; None = any) and dtype of a model input."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


def input_specs(model: Any) -> list[InputSpec]:
    """Return the `InputSpec` of each input of a built Keras model, in order.

    Args:
        model: A built Keras model (either flavor).

    Returns:
        List of `InputSpec`.
    """
    specs = []
    for i, t in enumerate(model.inputs):
        name = str(getattr(t, "name", "") or f"input_{i}").split(":")[0]
        shape = tuple(None if d is None else int(d) for d in tuple(t.shape)[1:])
        dtype = getattr(t.dtype, "name", t.dtype)
        specs.append(InputSpec(name, shape, str(dtype)))
    return specs


def _as_numpy(value: Any) -> Any:
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return value.numpy()
    return value


def _split_element(element: Any, n_inputs: int) -> tuple[Any, Any]:
    """Split one element into (x, y); y is None when absent."""
    element = _as_numpy(element)
    if isinstance(element, dict):
        return element, None
    if isinstance(element, (tuple, list)):
        if n_inputs == 1 and len(element) == 2:
            return element[0], element[1]
        if n_inputs > 1 and len(element) == 2 and isinstance(element[0], (tuple, list, dict)):
            return element[0], element[1]
        if n_inputs == 1 and len(element) == 1:
            return element[0], None
    return element, None


def _per_input(x: Any, specs: Sequence[InputSpec], argument: str) -> list[np.ndarray]:
    if isinstance(x, dict):
        missing = [s.name for s in specs if s.name not in x]
        if missing:
            raise ValueError(
                f"Argument `{argument}` must provide every model input "
                f"({', '.join(s.name for s in specs)}). Missing: {', '.join(missing)}. "
                f"Received keys: {sorted(x)}"
            )
        return [np.asarray(_as_numpy(x[s.name])) for s in specs]
    if isinstance(x, (list, tuple)) and len(specs) > 1:
        if len(x) != len(specs):
            raise ValueError(
                f"Argument `{argument}` must provide {len(specs)} arrays, one per model input "
                f"({', '.join(s.name for s in specs)}). Received {len(x)} arrays."
            )
        return [np.asarray(_as_numpy(a)) for a in x]
    if len(specs) > 1:
        raise ValueError(
            f"Argument `{argument}` must provide {len(specs)} arrays (a list or a dict keyed by "
            f"{', '.join(s.name for s in specs)}) for this multi-input model. "
            f"Received: {type(x).__name__}"
        )
    return [np.asarray(_as_numpy(x))]


def _check(arr: np.ndarray, spec: InputSpec, argument: str) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"Argument `{argument}` must hold numbers for input {spec.name!r} ({spec.dtype}). "
            f"Received dtype={arr.dtype}"
        )
    if want.kind == "f" and arr.dtype.kind != "f":
        raise TypeError(
            f"Argument `{argument}` must be floating point for input {spec.name!r} "
            f"({spec.dtype}). Received dtype={arr.dtype}. Convert it as during training, "
            f"e.g. `x.astype('float32') / 255`."
        )
    if want.kind in "iu" and arr.dtype.kind not in "iub":
        raise TypeError(
            f"Argument `{argument}` must be integer for input {spec.name!r} ({spec.dtype}). "
            f"Received dtype={arr.dtype}"
        )
    received = tuple(arr.shape)
    if arr.ndim == len(spec.shape):  # a single sample: add the batch axis
        arr = arr[None]
    ok = arr.ndim == len(spec.shape) + 1 and all(
        want_d is None or want_d == got
        for want_d, got in zip(spec.shape, arr.shape[1:], strict=False)
    )
    if not ok:
        expected = "(batch, " + ", ".join("None" if d is None else str(d) for d in spec.shape)
        raise ValueError(
            f"Argument `{argument}` has the wrong shape for input {spec.name!r}: expected "
            f"{expected}). Received shape={received}"
        )
    return arr.astype(want, copy=False)


def collect_inputs(
    data: Any,
    specs: Sequence[InputSpec],
    *,
    argument: str = "representative_data",
    max_samples: int | None = None,
) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Gather ``data`` into one checked array per model input, plus labels if any.

    Args:
        data: Numpy array(s) (array, list, dict keyed by input name), ``(x, y)``
            tuple, ``tf.data.Dataset``, generator, or a callable returning an
            iterable of elements (``x`` or ``(x, y)``, batched or not).
        specs: List of `InputSpec`, from `input_specs`.
        argument: String. Argument name for error messages.
        max_samples: Integer or None. Stop after this many samples.

    Returns:
        Tuple ``(inputs, y)``: a list of arrays (one per input, batch first)
        and the labels as an array, or None when the data has none.

    Raises:
        ValueError: on a shape mismatch, missing inputs or empty data.
        TypeError: on a dtype that does not fit, or an unsupported data type.

    Example:
        >>> import numpy as np
        >>> specs = [InputSpec("x", (3,), "float32")]
        >>> xs, y = collect_inputs((np.ones((5, 3), "float32"), np.arange(5)), specs)
        >>> xs[0].shape, y.tolist()
        ((5, 3), [0, 1, 2, 3, 4])
    """
    if data is None:
        raise ValueError(f"Argument `{argument}` must not be None.")
    if isinstance(data, (np.ndarray, dict)) or (
        isinstance(data, (list, tuple))
        and all(isinstance(a, (np.ndarray, list, tuple, dict)) for a in data)
    ):
        elements: Iterable[Any] = [data]
    else:
        if callable(data) and not hasattr(data, "__iter__"):
            data = data()
        if not hasattr(data, "__iter__"):
            raise TypeError(
                f"Argument `{argument}` must be numpy arrays, a tf.data.Dataset, a generator "
                f"or a callable returning one. Received: {argument}={type(data).__name__}"
            )
        elements = data
    columns: list[list[np.ndarray]] = [[] for _ in specs]
    labels: list[np.ndarray] = []
    count = 0
    for element in elements:
        x, y = _split_element(element, len(specs))
        arrays = [
            _check(a, s, argument)
            for a, s in zip(_per_input(x, specs, argument), specs, strict=False)
        ]
        n = arrays[0].shape[0]
        for col, arr in zip(columns, arrays, strict=False):
            col.append(arr)
        if y is not None:
            y = np.asarray(_as_numpy(y))
            labels.append(y[None] if y.ndim == 0 or (n == 1 and y.shape[0] != 1) else y)
        count += n
        if max_samples is not None and count >= max_samples:
            break
    if count == 0:
        raise ValueError(f"Argument `{argument}` holds no samples.")
    inputs = [np.concatenate(col)[:max_samples] for col in columns]
    y_all = np.concatenate(labels)[:max_samples] if labels else None
    return inputs, y_all


def load_npz(path: str | os.PathLike, specs: Sequence[InputSpec]) -> tuple[Any, Any]:
    """Read an ``.npz`` file into ``(x, y)`` for `collect_inputs`.

    Arrays are taken by model input name (``image=...``), else ``x``; labels
    from ``y`` when present.

    Args:
        path: Path of the ``.npz`` file.
        specs: List of `InputSpec` of the model.

    Returns:
        Tuple ``(x, y)``: x is a dict keyed by input name, y an array or None.

    Raises:
        ValueError: if the file is missing, unreadable, or has no usable arrays.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise ValueError(
            f"Could not read {path!r} as an .npz file ({err}). Save data with "
            f"`np.savez(path, x=x, y=y)` or with arrays named after the model inputs."
        ) from None
    names = [s.name for s in specs]
    if all(n in arrays for n in names):
        x: dict[str, np.ndarray] = {n: arrays[n] for n in names}
    elif "x" in arrays and len(specs) == 1:
        x = {names[0]: arrays["x"]}
    else:
        raise ValueError(
            f"{path!r} must hold arrays named after the model inputs ({', '.join(names)}) or "
            f"`x` (single-input models). Found: {', '.join(sorted(arrays)) or 'nothing'}"
        )
    return x, arrays.get("y")


def as_generator(
    inputs: Sequence[np.ndarray], names: Sequence[str], batch_size: int = 1
) -> Callable[[], Iterator]:
    """Return a representative-dataset callable yielding dicts of ``batch_size`` samples.

    With ``batch_size`` > 1 (a model exported with a fixed batch) the samples are
    cycled so that every batch is full.

    Args:
        inputs: List of arrays, one per input, batch first.
        names: Signature input names, in the order of ``inputs``.
        batch_size: Integer >= 1. Samples per yielded batch.

    Returns:
        A callable returning an iterator of ``{name: array}`` dicts.

    Example:
        >>> gen = as_generator([np.arange(6.0).reshape(3, 2)], ["x"], batch_size=2)
        >>> [b["x"].shape for b in gen()]
        [(2, 2), (2, 2)]
    """
    n = int(inputs[0].shape[0])

    def gen() -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, n, batch_size):
            idx = np.arange(start, start + batch_size) % n
            yield {name: a[idx] for name, a in zip(names, inputs, strict=False)}

    return gen
