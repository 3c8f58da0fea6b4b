"""Every keras_opt figure: made off-screen, saved atomically, no global side effect.

`new_figure` returns a ``matplotlib.figure.Figure`` with its own Agg canvas.
Nothing goes through pyplot: the user's backend (``matplotlib.use``), pyplot's
list of open figures and ``rcParams`` stay as they were, in a notebook as in a
script, and a figure is freed with its last reference. `save_figure` writes
one as PNG.

Example:
    >>> import os, tempfile
    >>> fig = new_figure((3, 2))
    >>> _ = fig.subplots().plot([1, 2, 3])
    >>> path = save_figure(fig, os.path.join(tempfile.mkdtemp(), "plots", "line.png"))
    >>> os.path.basename(path), os.path.getsize(path) > 0
    ('line.png', True)
"""

from __future__ import annotations

import os
import sys
from typing import Any


def new_figure(figsize: tuple[float, float], dpi: int = 100) -> Any:
    """A ``matplotlib.figure.Figure`` of ``figsize`` inches on its own Agg canvas.

    Args:
        figsize: Tuple ``(width, height)`` in inches.
        dpi: Integer. Resolution of the figure.

    Returns:
        The figure; draw with ``fig.subplots(...)``, save with `save_figure`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> str:
    """Write ``fig`` as PNG to ``path`` atomically (temporary file, then rename).

    Creates the parent folder and returns the path as a string. A failed save
    leaves no partial file. A figure that pyplot manages (made elsewhere with
    ``plt.figure``) is closed afterwards; pyplot is never imported here.

    Args:
        fig: A ``matplotlib.figure.Figure``, usually from `new_figure`.
        path: String or path of the PNG.
        dpi: Integer. Resolution of the PNG.

    Returns:
        The path written, as a string.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = path + ".part"
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close(fig)
    return path
