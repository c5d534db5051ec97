"""Memory and swap: /proc/meminfo on Linux, psutil elsewhere (:mod:`llmaos_agent.system`)."""

from __future__ import annotations

from llmaos_agent.protocol import Memory
from llmaos_agent.system import host_os


def memory() -> Memory:
    total, available, swap_total, swap_used = host_os().memory()
    return Memory(
        total=total,
        used=total - available,
        available=available,
        swap_total=swap_total,
        swap_used=swap_used,
    )
