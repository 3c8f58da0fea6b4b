"""Saving matplotlib figures: folders created, atomic write, figure closed."""

from __future__ import annotations

import os
from typing import Any


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> str:
    """Write ``fig`` as PNG to ``path`` atomically (temporary file, then rename).

    Creates the parent folder, closes the figure afterwards (pyplot or not) and
    returns the path as a string. A failed save leaves no partial file.
    """
    import matplotlib.pyplot as plt

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
        plt.close(fig)
    return path
