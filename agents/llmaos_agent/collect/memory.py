"""Memory and swap."""

from __future__ import annotations

import psutil

from llmaos_agent.protocol import Memory


def memory() -> Memory:
    vm = psutil.virtual_memory()
    try:
        sw = psutil.swap_memory()
        swap_total, swap_used = int(sw.total), int(sw.used)
    except (OSError, RuntimeError):  # no swap accounting (some containers)
        swap_total = swap_used = 0
    return Memory(
        total=int(vm.total),
        used=int(vm.total - vm.available),
        available=int(vm.available),
        swap_total=swap_total,
        swap_used=swap_used,
    )
