"""What the console knows of each host and of the fleet, fed by sessions, read by views.

Plain data and derived figures; no I/O and no UI. Figures use the one beta
implementation in ``llmaos_agent.metrics``.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from llmaos_agent.metrics import beta, beta_fleet, mean
from llmaos_agent.procdelta import apply
from llmaos_agent.protocol import (
    AgentCost,
    Container,
    ContainerDelta,
    Hello,
    Proc,
    RequestDelta,
    RequestInfo,
    Sample,
)
from llmaos_tui.fleet.host_io import HostIO

HISTORY_POINTS = 3600


class HostStatus(enum.Enum):
    CONNECTING = "connecting"
    DEPLOYING = "deploying"
    UP = "up"
    STALE = "stale"
    DOWN = "down"


class Point(NamedTuple):
    """One history point of a host: what the charts draw."""

    t: float
    cpu: float  # mean core load, 0..1
    beta_cpu: float
    beta_gpu: float
    mem: float  # used fraction
    gpu: float | None  # mean GPU utilisation, None without GPUs


class _Figures(NamedTuple):
    """A sample's CPU figures, worked out once: the table, the sorts, the fleet's beta and
    the history point all read them, several times a second with many hosts."""

    sample: Sample
    busy: float  # busy cores, the sum of the loads
    cpu: float  # mean core load
    beta_cpu: float


def _figures_of(s: Sample) -> _Figures:
    n = len(s.cpu)
    busy = sum(s.cpu)
    return _Figures(s, busy, busy / n if n else 0.0, beta(s.cpu))


def point_of(s: Sample, figures: _Figures | None = None) -> Point:
    f = figures if figures is not None and figures.sample is s else _figures_of(s)
    mem = s.mem.used / s.mem.total if s.mem.total else 0.0
    if not s.gpus:  # most hosts: what beta and mean give for no loads, without the calls
        return Point(t=s.t, cpu=f.cpu, beta_cpu=f.beta_cpu, beta_gpu=0.0, mem=mem, gpu=None)
    gpu_loads = [g.util for g in s.gpus if g.util is not None]
    return Point(
        t=s.t,
        cpu=f.cpu,
        beta_cpu=f.beta_cpu,
        beta_gpu=beta(gpu_loads),
        mem=mem,
        gpu=mean(gpu_loads) if gpu_loads else None,
    )


@dataclass
class HostState:
    name: str
    target: str = ""
    status: HostStatus = HostStatus.CONNECTING
    reason: str = ""
    """What the views show beside the status: for a down host, ``cause`` and what
    happens next ("retry in 8 s", "retrying now", or the hint to retry by hand)."""
    cause: str = ""
    """Why the host is down, alone (``reason`` without what happens next)."""
    retry_at: float | None = None
    """time.monotonic() of the next connect attempt while down; None when none is due
    (up, connecting now, or held until asked)."""
    retry_held: bool = False
    """Down for a reason retrying cannot fix (a refused login or host key): no attempt is
    made until the operator asks for one."""
    hello: Hello | None = None
    sample: Sample | None = None
    procs: dict[int, Proc] = field(default_factory=dict)
    procs_version: int = 0
    """Bumped whenever the process table changes, so views can skip work."""
    history: deque[Point] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    last_rx: float = 0.0
    """time.monotonic() of the last line from the agent."""
    warnings: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    requests: dict[str, RequestInfo] = field(default_factory=dict)
    requests_version: int = 0
    containers: dict[str, Container] = field(default_factory=dict)
    """The host engine's containers by full id (empty without an engine)."""
    containers_version: int = 0
    slurm: str | None = None  # the host's node state in a Slurm cluster (sinfo's word)
    agent_cost: AgentCost | None = None
    """The agent's own cost as it last reported it (one sample in ten carries it)."""
    io: HostIO = field(default_factory=HostIO, repr=False, compare=False)
    """Network, disk and temperatures, and the per-core and per-GPU histories."""
    _figs: _Figures | None = field(default=None, repr=False, compare=False)
    """The current sample's figures; recomputed when ``sample`` is another object (a
    test or a caller may set it directly)."""

    # ------------------------------------------------------------- updates

    def set_status(self, status: HostStatus, reason: str = "") -> None:
        self.status = status
        self.reason = self.cause = reason
        self.retry_at = None
        self.retry_held = False

    def show_retry(self, at: float, now: float) -> None:
        """Down, and the next attempt is due at ``at`` (monotonic); the reason counts down
        in whole seconds, rounded up, so it never says 0 before the attempt."""
        self.retry_at = at
        self.retry_held = False
        self.reason = _then(self.cause, f"retry in {max(1, math.ceil(at - now))} s")

    def show_retrying(self) -> None:
        """Down, and an attempt is under way."""
        self.retry_at = None
        self.retry_held = False
        self.reason = _then(self.cause, "retrying now")

    def show_held(self, hint: str) -> None:
        """Down, and not tried again until asked (``hint`` says how)."""
        self.retry_at = None
        self.retry_held = True
        self.reason = _then(self.cause, f"not retried: {hint}")

    def on_hello(self, hello: Hello) -> None:
        self.hello = hello
        self.agent_cost = None  # maybe another daemon: its history ring says again
        self.last_rx = time.monotonic()

    def on_history(self, samples: Iterable[Sample]) -> None:
        known = self.history[-1].t if self.history else 0.0
        for s in samples:
            if s.t > known:  # after a reconnect, only what we have not seen
                self.history.append(point_of(s))
                self.io.add(s)
            if s.agent is not None:
                self.agent_cost = s.agent

    def on_sample(self, s: Sample) -> None:
        self.sample = s
        self.last_rx = time.monotonic()
        self._figs = figs = _figures_of(s)
        self.history.append(point_of(s, figs))
        self.io.add(s)
        if s.agent is not None:
            self.agent_cost = s.agent
        if s.procs is not None:
            apply(self.procs, s.procs)
            self.procs_version += 1

    def on_requests(self, d: RequestDelta) -> None:
        if d.full:
            self.requests = {}
        for r in d.upsert:
            self.requests[r.id] = r
        for rid in d.gone:
            self.requests.pop(rid, None)
        self.requests_version += 1

    def on_containers(self, d: ContainerDelta) -> None:
        if d.full:
            self.containers = {}
        for c in d.upsert:
            self.containers[c.id] = c
        for cid in d.gone:
            self.containers.pop(cid, None)
        self.containers_version += 1

    # ------------------------------------------------------------- figures

    @property
    def up(self) -> bool:
        return self.status in (HostStatus.UP, HostStatus.STALE)

    @property
    def cores(self) -> int:
        if self.sample is not None:
            return len(self.sample.cpu)
        return self.hello.host.cores if self.hello else 0

    def _figures(self) -> _Figures | None:
        s = self.sample
        if s is None:
            return None
        f = self._figs
        if f is None or f.sample is not s:
            f = self._figs = _figures_of(s)
        return f

    @property
    def busy_cores(self) -> float:
        f = self._figures()
        return f.busy if f is not None else 0.0

    @property
    def cpu(self) -> float | None:
        f = self._figures()
        return f.cpu if f is not None else None

    @property
    def mem(self) -> float | None:
        if self.sample is None or not self.sample.mem.total:
            return None
        return self.sample.mem.used / self.sample.mem.total

    @property
    def gpu_loads(self) -> list[float]:
        if self.sample is None:
            return []
        return [g.util for g in self.sample.gpus if g.util is not None]

    @property
    def gpu(self) -> float | None:
        loads = self.gpu_loads
        return mean(loads) if loads else None

    @property
    def beta_cpu(self) -> float | None:
        f = self._figures()
        return f.beta_cpu if f is not None else None

    @property
    def beta_gpu(self) -> float | None:
        loads = self.gpu_loads
        return beta(loads) if loads else None

    @property
    def mem_available(self) -> int | None:
        return self.sample.mem.available if self.sample is not None else None

    @property
    def gpu_count(self) -> int | None:
        """GPUs the agent sees (None before the first sample: not known yet)."""
        return len(self.sample.gpus) if self.sample is not None else None

    @property
    def docker(self) -> bool:
        return self.hello is not None and self.hello.caps.docker

    @property
    def mem_total(self) -> int:
        if self.sample is not None:
            return self.sample.mem.total
        return self.hello.host.mem_total if self.hello else 0


def _then(cause: str, next_step: str) -> str:
    return f"{cause} ({next_step})" if cause else next_step


@dataclass
class FleetState:
    hosts: dict[str, HostState] = field(default_factory=dict)
    beta_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))

    def add(self, name: str, target: str = "") -> HostState:
        if name in self.hosts:
            raise ValueError(f"host {name!r} is already in the fleet")
        h = HostState(name=name, target=target)
        self.hosts[name] = h
        return h

    def up_hosts(self) -> list[HostState]:
        return [h for h in self.hosts.values() if h.up and h.sample is not None]

    def beta(self) -> float:
        """Capacity-weighted beta across the hosts that report (DESIGN.md)."""
        return beta_fleet((h.cores, h.busy_cores) for h in self.up_hosts())

    def tick(self) -> float:
        """Record the fleet beta once (the console calls this at 1 Hz)."""
        b = self.beta()
        self.beta_history.append(b)
        return b
