"""Choose which layers a compression step touches: by name, regex or type.

A selection is a list whose items are layer names (``"head"``), compiled
regular expressions (``re.compile("res_.*")``, matched in full against the
name) or layer classes (``keras.layers.Conv2D``). ``layers=None`` means every
eligible layer; ``skip`` removes layers from that set. A name that is not in
the model, a regex or class that matches nothing, is an error that lists the
layer names the model has, never a silent no-op.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from keras_opt import _validation

Selector = str | re.Pattern | type
Selection = Selector | Sequence[Selector] | None

__all__ = ["select_layers"]


def _as_list(value: Selection, argument: str) -> list[Selector]:
    if value is None:
        return []
    if isinstance(value, (str, re.Pattern, type)):
        return [value]
    if isinstance(value, Iterable):
        items = list(value)
        for item in items:
            if not isinstance(item, (str, re.Pattern, type)):
                _validation.fail(
                    argument,
                    "a list of layer names, compiled regexes (re.compile) or layer classes",
                    value,
                    exc=TypeError,
                )
        return items
    _validation.fail(
        argument,
        "a layer name, a compiled regex, a layer class or a list of them",
        value,
        exc=TypeError,
    )
    return []  # pragma: no cover


def _matches(selector: Selector, layer: Any) -> bool:
    if isinstance(selector, str):
        return layer.name == selector
    if isinstance(selector, re.Pattern):
        return selector.fullmatch(layer.name) is not None
    return isinstance(layer, selector)


def _describe(selector: Selector) -> str:
    if isinstance(selector, re.Pattern):
        return f"re.compile({selector.pattern!r})"
    if isinstance(selector, type):
        return selector.__name__
    return repr(selector)


def select_layers(
    all_layers: Sequence[Any],
    layers: Selection = None,
    skip: Selection = None,
    *,
    eligible: Callable[[Any], bool] = lambda layer: True,
    what: str = "compressed",
) -> set[str]:
    """Return the names of the layers chosen by ``layers`` and ``skip``.

    Args:
        all_layers: Sequence of Keras layers (e.g. ``model.layers``).
        layers: A layer name, compiled regex or layer class, or a list of them.
            None selects every eligible layer.
        skip: The same kinds of selectors; matching layers are left out.
        eligible: Callable. Whether a layer can be ``what`` at all. A layer
            chosen explicitly by name that is not eligible is an error.
        what: String. The verb for messages (``"pruned"``, ``"clustered"``).

    Returns:
        Set of layer names.

    Raises:
        ValueError: for a name that is not in the model, a selector that
            matches nothing, or a named layer that cannot be ``what``.
        TypeError: for a selector that is not a string, regex or class.

    Example:
        >>> import re
        >>> from keras_opt.backend import keras
        >>> from keras_opt.optimization.layers import select_layers
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d1"),
        ...                           keras.layers.Dense(2, name="d2")])
        >>> sorted(select_layers(model.layers, [re.compile("d.")], skip="d2"))
        ['d1']
    """
    names = [layer.name for layer in all_layers]
    chosen_items = _as_list(layers, "layers")
    skip_items = _as_list(skip, "skip")
    for argument, items in (("layers", chosen_items), ("skip", skip_items)):
        for selector in items:
            if not any(_matches(selector, layer) for layer in all_layers):
                kind = "a layer name of the model" if isinstance(selector, str) else "a selector"
                _validation.fail(
                    argument,
                    f"{kind} that matches at least one layer",
                    selector if isinstance(selector, str) else _describe(selector),
                    hint=f"The model's layers are: {', '.join(names)}",
                )
    if chosen_items:
        chosen = [layer for layer in all_layers if any(_matches(s, layer) for s in chosen_items)]
        for selector in chosen_items:
            if isinstance(selector, str):
                layer = next(layer for layer in all_layers if layer.name == selector)
                if not eligible(layer):
                    _validation.fail(
                        "layers",
                        f"layers that can be {what}",
                        selector,
                        hint=f"Layer {selector!r} ({type(layer).__name__}) has no weights "
                        f"that can be {what}",
                    )
        chosen = [layer for layer in chosen if eligible(layer)]
    else:
        chosen = [layer for layer in all_layers if eligible(layer)]
    return {layer.name for layer in chosen if not any(_matches(s, layer) for s in skip_items)}


def select_weighted(
    flat: Any,
    layers: Selection,
    skip: Selection,
    *,
    eligible: Callable[[Any], bool],
    what: str,
) -> set[str]:
    """`select_layers` over a flattened model's layers; an error if nothing can be ``what``.

    For `prune` and `cluster`, which need at least one layer with weights they
    can change. ``what`` is the verb (``"pruned"``, ``"clustered"``).
    """
    from keras_opt.optimization import _graph

    chosen = select_layers(
        list(_graph.iter_layers(flat)), layers, skip, eligible=eligible, what=what
    )
    if not chosen:
        adjective = {"pruned": "prunable", "clustered": "clusterable"}.get(what, what)
        _validation.fail(
            "model" if layers is None else "layers",
            f"a model with at least one {adjective} layer (Dense, Conv, DepthwiseConv, "
            "SeparableConv, Embedding...)",
            flat.name if layers is None else layers,
        )
    return chosen
