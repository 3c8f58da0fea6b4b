"""Every keras_opt figure goes through `keras_opt._plotting`, with no global side effect."""

from __future__ import annotations

import sys

import matplotlib
import numpy as np
import pytest

from keras_opt._plotting import new_figure, save_figure
from keras_opt.callbacks import ActivationMonitor, LRFinderResult
from keras_opt.callbacks._history_files import plot as plot_history
from keras_opt.diagnostics import ErrorReport


@pytest.fixture
def no_global_matplotlib_state(monkeypatch):
    """Fail on any change of the user's backend; check pyplot's figure list is untouched."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"matplotlib.use{args} called: it changes the user's backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    backend = matplotlib.rcParams._get_backend_or_none()
    pyplot = sys.modules.get("matplotlib.pyplot")
    figures = pyplot.get_fignums() if pyplot is not None else None
    yield
    assert matplotlib.rcParams._get_backend_or_none() == backend
    if pyplot is not None:
        assert pyplot.get_fignums() == figures


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_new_figure_has_its_own_agg_canvas(no_global_matplotlib_state, tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = new_figure((2, 1), dpi=50)
    assert isinstance(fig.canvas, FigureCanvasAgg)
    fig.subplots().plot([0, 1])
    path = save_figure(fig, tmp_path / "sub" / "f.png", dpi=50)
    assert path == str(tmp_path / "sub" / "f.png")
    assert _is_png(path)
    assert not (tmp_path / "sub" / "f.png.part").exists()


def test_failed_save_leaves_no_file(no_global_matplotlib_state, tmp_path):
    fig = new_figure((2, 1))
    target = tmp_path / "f.png"
    with pytest.raises(ValueError, match="dpi"):
        save_figure(fig, target, dpi=-1)
    assert list(tmp_path.iterdir()) == []


def test_every_callback_and_diagnostics_plot_writes_a_png(no_global_matplotlib_state, tmp_path):
    lrs = list(np.geomspace(1e-4, 1.0, 10))
    losses = [2.0 - 0.1 * i for i in range(10)]
    finder = LRFinderResult(lrs, losses, losses, {"valley": 1e-2}, "valley", 1e-2, False)
    monitor = ActivationMonitor(probe=np.zeros((2, 3), "float32"), bins=4)
    counts, edges = np.histogram(np.arange(10.0), bins=4)
    monitor.records = [{"epoch": None, "layers": {"dense": {"histogram": (counts, edges)}}}]
    report = ErrorReport(
        confusion=np.array([[3, 1], [0, 4]]),
        class_names=["a", "b"],
        precision=np.array([1.0, 0.8]),
        recall=np.array([0.75, 1.0]),
        f1=np.array([0.86, 0.89]),
        support=np.array([4, 4]),
        accuracy=0.875,
        most_confused=[],
        top_losses=np.array([]),
        losses=np.array([]),
        predictions=np.array([]),
    )
    history = [{"epoch": 0, "loss": 1.0, "learning_rate": 1e-3, "accuracy": 0.5}]
    paths = [
        finder.plot(tmp_path / "lr.png"),
        monitor.plot(tmp_path / "act.png"),
        report.plot_confusion(tmp_path / "confusion.png"),
        plot_history(str(tmp_path / "curves.png"), history, [[1.2, 1.0]]),
    ]
    assert all(_is_png(p) for p in paths)
