"""How busy the machine was around a measurement (stdlib only; Linux /proc where it exists).

The 1-minute load average counts the benchmark's own threads and decays over
minutes, so on a 2-core machine it stays above 1 for a minute after any
earlier run. What can skew a ratio is *other* work: `Window` measures the
cores other processes kept busy during a block (all busy CPU time from
``/proc/stat`` minus this process's, or its children's) and the hypervisor's
steal time, next to the load average and the CPU-to-wall ratio. `settle`
waits for the load left by an earlier run to fade before a timing run starts.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any


def load_1min() -> float | None:
    """The 1-minute load average, rounded, or None where the OS has none."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _cpu_fields() -> list[int] | None:
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def busy_and_steal_seconds() -> tuple[float, float] | None:
    """CPU seconds all processes have been busy since boot, and steal seconds, or None."""
    fields = _cpu_fields()
    if fields is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:7]) - idle) / tick, steal / tick


def own_cpu_seconds(children: bool = False) -> float:
    """CPU seconds of this process (all threads), or of its waited-for children."""
    if not children:
        return time.process_time()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Window:
    """Wall, own CPU, other processes' CPU and steal time, and load average, around a block.

    Args:
        children: Boolean. Count the CPU of waited-for child processes as
            "own" (a runner that starts the benchmark in a subprocess).

    After the block, ``record`` holds ``load_average_1min_before/after``,
    ``wall_s``, ``own_cpu_s``, ``own_cores_used``, ``other_processes_cores_used``
    (None without /proc/stat) and ``steal_cores`` (the hypervisor's share).
    """

    def __init__(self, children: bool = False) -> None:
        self.children = children
        self.record: dict[str, Any] = {}

    def __enter__(self) -> Window:
        self._load = load_1min()
        self._busy = busy_and_steal_seconds()
        self._cpu = own_cpu_seconds(self.children)
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self._wall
        cpu = own_cpu_seconds(self.children) - self._cpu
        busy = busy_and_steal_seconds()
        others = steal = None
        if busy is not None and self._busy is not None and wall > 0:
            others = round(max(0.0, busy[0] - self._busy[0] - cpu) / wall, 2)
            steal = round(max(0.0, busy[1] - self._busy[1]) / wall, 2)
        self.record = {
            "load_average_1min_before": self._load,
            "load_average_1min_after": load_1min(),
            "wall_s": round(wall, 2),
            "own_cpu_s": round(cpu, 2),
            "own_cores_used": round(cpu / wall, 2) if wall else None,
            "other_processes_cores_used": others,
            "steal_cores": steal,
        }


def settle(max_load: float, timeout_s: float = 90.0, poll_s: float = 5.0) -> dict[str, Any]:
    """Wait until the 1-minute load average is at most ``max_load``, or ``timeout_s`` passed.

    Returns:
        ``{"waited_s": ..., "load_average_1min": ...}`` at the end of the wait.
    """
    start = time.perf_counter()
    load = load_1min()
    while load is not None and load > max_load and time.perf_counter() - start < timeout_s:
        time.sleep(poll_s)
        load = load_1min()
    return {"waited_s": round(time.perf_counter() - start, 1), "load_average_1min": load}
