"""Which queued request runs next and where: priority order with aging, admission, placement.

Pure: it sees loads and claims, never processes. Order is by effective priority
(priority plus one point per ``aging_s`` seconds waited, so a low priority cannot
starve), then FIFO (``seq``). Dispatch takes requests in that order and stops at
the first that does not fit (no backfill past the head), so a big request at the
head is not overtaken forever by small ones; requests that can never fit are
refused at submit instead of blocking the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pending:
    id: str
    priority: int
    seq: int
    submitted: float
    cpus: int = 1
    gpus: int = 0
    share_gpu: bool = False
    mem: int = 0


@dataclass
class Gpu:
    uuid: str
    util: float  # 0..1; unknown counts as 0
    exclusive: bool = False  # held by a request that does not share
    shared: int = 0  # requests sharing it


@dataclass
class Resources:
    """What the host has free now: per-core load and request slots in use, GPUs, memory."""

    core_loads: list[float]
    slots_used: list[int]
    slots_per_core: int = 1
    gpus: list[Gpu] = field(default_factory=list)
    mem_available: int = 0


@dataclass(frozen=True)
class Placement:
    cores: list[int]
    gpus: list[str]  # UUIDs
    reason: str


def effective_priority(p: Pending, now: float, aging_s: float) -> int:
    waited = max(0.0, now - p.submitted)
    return p.priority + (int(waited // aging_s) if aging_s > 0 else 0)


def order(queued: list[Pending], now: float, aging_s: float) -> list[Pending]:
    """Highest effective priority first, FIFO within one."""
    return sorted(queued, key=lambda p: (-effective_priority(p, now, aging_s), p.seq))


def never_fits(p: Pending, cores: int, slots_per_core: int, gpus: int, mem_total: int) -> str:
    """Why ``p`` can never run on this host, or "" when it can."""
    if p.cpus > cores * slots_per_core:
        return f"asks for {p.cpus} cores; this host has {cores}"
    if p.gpus > gpus:
        return f"asks for {p.gpus} GPUs; this host has {gpus}"
    if mem_total and p.mem > mem_total:
        return f"asks for {p.mem} bytes of memory; this host has {mem_total}"
    return ""


def place(p: Pending, res: Resources) -> Placement | str:
    """Where ``p`` goes now (least-loaded free cores and GPUs), or why it must wait."""
    if p.mem and p.mem > res.mem_available:
        return f"waits for memory: needs {p.mem >> 20} MiB, {res.mem_available >> 20} MiB free"
    cores: list[int] = []
    if p.cpus:
        free = [i for i, used in enumerate(res.slots_used) if used < res.slots_per_core]
        if len(free) < p.cpus:
            return f"waits for {p.cpus} free cores ({len(free)} free)"
        # Fewest requests first, then the lowest measured load: the least-loaded cores.
        free.sort(key=lambda i: (res.slots_used[i], res.core_loads[i], i))
        cores = sorted(free[: p.cpus])
    gpus: list[Gpu] = []
    if p.gpus:
        ok = [g for g in res.gpus if not g.exclusive and (p.share_gpu or g.shared == 0)]
        if len(ok) < p.gpus:
            return f"waits for {p.gpus} free GPUs ({len(ok)} free)"
        ok.sort(key=lambda g: (g.shared, g.util))
        gpus = ok[: p.gpus]
    load = [round(res.core_loads[i], 2) for i in cores]
    why = f"least-loaded cores {cores} (load {load})" if cores else "no core pinning"
    if gpus:
        why += f"; GPUs {[g.uuid for g in gpus]}" + (" shared" if p.share_gpu else "")
    return Placement(cores=cores, gpus=[g.uuid for g in gpus], reason=why)


def claim(res: Resources, p: Pending, where: Placement) -> None:
    """Mark ``where`` as used by ``p`` so the next placement in the same pass sees it."""
    for c in where.cores:
        res.slots_used[c] += 1
    for g in res.gpus:
        if g.uuid in where.gpus:
            if p.share_gpu:
                g.shared += 1
            else:
                g.exclusive = True
    res.mem_available = max(0, res.mem_available - p.mem)


def nice_for(priority: int) -> int:
    """The OS nice value a running request's priority maps to: 10 points per nice step."""
    return max(-20, min(19, int(-priority / 10)))
