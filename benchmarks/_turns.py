"""Several `fit` calls in one process, taking turns one epoch at a time.

Timing two configurations in separate fits, one after the other, compares
epochs that ran seconds apart; on a shared VM the machine's speed drifts by
10-50% over seconds (slow phases that show neither as steal nor as other
processes' CPU), which swamps an overhead of 2%. `Lanes` runs each fit in its
own thread, but only one at a time: a gate callback (first in the fit's list)
blocks at every epoch begin until the main thread gives that fit a turn, and
a release callback (last in the list) stops the clock at epoch end and hands
the turn back. Two configurations' epochs can then be measured back to back,
microseconds apart, with every fit's graph already traced; the hooks of both
are inside the timed span, and no fit runs while another is timed.

Example::

    lanes = Lanes()
    lanes.add("plain", model_a, [], x, y, batch_size=32, epochs=5)
    lanes.add("guarded", model_b, [NaNGuard()], x, y, batch_size=32, epochs=5)
    lanes.start()
    for name in ("plain", "guarded"):
        lanes.turn(name)              # first epochs: tracing
    wall, cpu = lanes.turn("plain")   # one epoch of plain fit
    ...
    lanes.finish()
"""

from __future__ import annotations

import threading
import time
from typing import Any

from keras_opt.backend import keras

#: Seconds the main thread waits for one epoch before it calls the fit stuck.
TURN_TIMEOUT_S = 600.0


class _Lane:
    def __init__(self, name: str) -> None:
        self.name = name
        self.go = threading.Event()
        self.done = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.result: tuple[float, float] = (0.0, 0.0)
        self.started_at = (0.0, 0.0)
        self.thread: threading.Thread | None = None

    def wait_for_turn(self) -> None:
        self.ready.set()
        self.go.wait()
        self.go.clear()


class _Gate(keras.callbacks.Callback):
    """First callback of a lane's fit: waits for the turn, then starts the clock."""

    def __init__(self, lane: _Lane) -> None:
        super().__init__()
        self.lane = lane

    def on_train_begin(self, logs: Any = None) -> None:
        self.lane.wait_for_turn()  # the first turn covers on_train_begin and the first epoch

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        if epoch > 0:
            self.lane.wait_for_turn()
        self.lane.started_at = (time.perf_counter(), time.process_time())


class _Release(keras.callbacks.Callback):
    """Last callback of a lane's fit: stops the clock and hands the turn back."""

    def __init__(self, lane: _Lane) -> None:
        super().__init__()
        self.lane = lane
        self.epochs = 0

    def on_train_begin(self, logs: Any = None) -> None:
        self.epochs = self.params["epochs"]

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        wall, cpu = self.lane.started_at
        self.lane.result = (time.perf_counter() - wall, time.process_time() - cpu)
        if epoch < self.epochs - 1:  # the last turn ends with the thread (on_train_end)
            self.lane.done.set()


class Lanes:
    """Fits that run one epoch at a time, when the main thread says (see module docstring)."""

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self._turns: dict[str, int] = {}
        self._epochs: dict[str, int] = {}
        self._fits: dict[str, tuple[Any, ...]] = {}

    def add(
        self, name: str, model: Any, callbacks: list[Any], x: Any, y: Any, **fit_kwargs: Any
    ) -> None:
        """A fit of ``model`` with ``callbacks``; ``fit_kwargs`` must hold ``epochs``."""
        lane = _Lane(name)
        self._lanes[name] = lane
        self._turns[name] = 0
        self._epochs[name] = int(fit_kwargs["epochs"])
        kwargs = {**fit_kwargs, "verbose": 0}
        self._fits[name] = (model, [_Gate(lane), *callbacks, _Release(lane)], x, y, kwargs)

    def start(self) -> None:
        """Start every fit's thread; return once each waits for its first turn."""
        for name, lane in self._lanes.items():
            lane.thread = threading.Thread(
                target=self._run, args=(lane, *self._fits[name]), name=f"lanes-{name}", daemon=True
            )
            lane.thread.start()
            lane.ready.wait()
            self._raise(lane)

    @staticmethod
    def _run(lane: _Lane, model: Any, callbacks: list[Any], x: Any, y: Any, kwargs: dict) -> None:
        try:
            model.fit(x, y, callbacks=callbacks, **kwargs)
        except BaseException as err:  # handed to the main thread
            lane.error = err
        finally:
            lane.ready.set()
            lane.done.set()

    def turn(self, name: str) -> tuple[float, float]:
        """Run one epoch of fit ``name``; return its wall and process CPU seconds."""
        lane = self._lanes[name]
        if self._turns[name] >= self._epochs[name]:
            raise RuntimeError(f"fit {name!r} has run all its {self._epochs[name]} epochs")
        self._turns[name] += 1
        lane.done.clear()
        lane.go.set()
        if not lane.done.wait(TURN_TIMEOUT_S):
            raise RuntimeError(f"fit {name!r} did not finish an epoch in {TURN_TIMEOUT_S:.0f} s")
        if self._turns[name] == self._epochs[name] and lane.thread is not None:
            lane.thread.join()
        self._raise(lane)
        return lane.result

    def finish(self) -> None:
        """Run every fit's remaining epochs, one fit after the other, and end the threads."""
        for name in self._lanes:
            while self._turns[name] < self._epochs[name]:
                self.turn(name)

    @staticmethod
    def _raise(lane: _Lane) -> None:
        if lane.error is not None:
            raise RuntimeError(f"fit {lane.name!r} failed: {lane.error!r}") from lane.error
