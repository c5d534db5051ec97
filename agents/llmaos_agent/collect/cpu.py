"""Per-core CPU load and the load average.

On Linux from ``/proc/stat`` deltas with the standard library (:mod:`procfs`, computed as
psutil's ``cpu_percent`` computes it); elsewhere through psutil.
"""

from __future__ import annotations

import os
import sys

from llmaos_agent import procfs


class CpuCollector:
    """Per-core utilisation in [0, 1] since the previous call.

    Each call measures against the previous one, so the first reading after
    construction covers the time since construction.
    """

    def __init__(self) -> None:
        self._last: list[tuple[int, ...]] = []
        if sys.platform == "linux":
            self._last = procfs.per_core_times()
        else:
            import psutil  # noqa: PLC0415 - the portable way off Linux

            psutil.cpu_percent(percpu=True)

    def per_core(self) -> list[float]:
        if sys.platform == "linux":
            now = procfs.per_core_times()
            last = self._last
            self._last = now
            if len(last) != len(now):  # a core went on- or offline: a fresh start
                return [0.0] * len(now)
            return [_clamp(procfs.busy_fraction(a, b)) for a, b in zip(last, now, strict=True)]
        import psutil  # noqa: PLC0415

        return [_clamp(p / 100.0) for p in psutil.cpu_percent(percpu=True)]


def _clamp(x: float) -> float:
    return round(min(max(x, 0.0), 1.0), 2)


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages; None where the OS has none."""
    try:
        if sys.platform == "win32":
            import psutil  # noqa: PLC0415 - Windows has none; psutil emulates one

            return [round(x, 2) for x in psutil.getloadavg()]
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None
