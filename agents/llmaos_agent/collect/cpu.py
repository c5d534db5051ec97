"""Per-core CPU load and the load average."""

from __future__ import annotations

import psutil


class CpuCollector:
    """Per-core utilisation in [0, 1] since the previous call.

    psutil measures against its own previous call, so the first reading after
    construction covers the time since construction.
    """

    def __init__(self) -> None:
        psutil.cpu_percent(percpu=True)

    def per_core(self) -> list[float]:
        return [_clamp(p / 100.0) for p in psutil.cpu_percent(percpu=True)]


def _clamp(x: float) -> float:
    return round(min(max(x, 0.0), 1.0), 2)


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages; None where the OS has none."""
    try:
        return [round(x, 2) for x in psutil.getloadavg()]
    except (AttributeError, OSError):
        return None
