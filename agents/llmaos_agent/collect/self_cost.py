"""The agent's own cost: the daemon's CPU (every thread, in cores) and resident memory.

Read from the daemon itself (``os.times()``, ``/proc/self/statm``), not from the process
table, so a console that has turned the table off (``procs.watch``) still hears it; sent
with one sample in :data:`EVERY` (a 64-core host in the fleet view has a few bytes a second
of its budget left, see bench/wire_procs.py), each figure covering the span since the last.
"""

from __future__ import annotations

import os
import sys
import time

from llmaos_agent.protocol import AgentCost

EVERY = 10
"""Samples between two reports (10 s at the default 1 Hz)."""


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system  # the whole process: the sampling, the clients, the threads


def _rss() -> int | None:
    if sys.platform == "linux":
        from llmaos_agent import procfs  # noqa: PLC0415 - Linux only

        try:
            return procfs.rss_pages(os.getpid()) * procfs.page_size()
        except (OSError, ValueError, IndexError):
            return None
    try:
        import psutil  # noqa: PLC0415 - off Linux the agent has psutil (DESIGN.md)
    except ImportError:
        return None
    try:
        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - a figure we cannot read is left out
        return None


class SelfCost:
    """CPU since the previous :meth:`read` (the first: since construction) and RSS now."""

    def __init__(self) -> None:
        self._cpu = _cpu_seconds()
        self._at = time.monotonic()

    def read(self) -> AgentCost:
        cpu, now = _cpu_seconds(), time.monotonic()
        span = now - self._at
        cores = (cpu - self._cpu) / span if span > 0 else 0.0
        self._cpu, self._at = cpu, now
        return AgentCost(cpu=round(max(0.0, cores), 3), rss=_rss())
