"""A host's network, disk and temperature figures, and the short histories the graphs draw.

Fed by :class:`~llmaos_tui.fleet.state.HostState` with every sample, live or from the
agent's history ring at attach (so the graphs are full as soon as a host is opened).
Plain data, no I/O and no UI.

What is kept, and what it costs (the console may hold 1,000 hosts):

- the latest rates per interface and per disk, by name; a name seen once keeps its row
  (a sample leaves out what moved nothing: absent is 0 B/s), at most :data:`MAX_NAMES`
  of each, the idlest forgotten first (a hostile agent naming a new interface every
  second costs no more);
- the CPU's temperatures with their names (paired only when the counts agree, as the
  wire says) and the host-clock time they were read, stale after :data:`TEMPS_STALE_S`;
- histories as flat byte rings: per core :data:`CORE_POINTS` points, per GPU
  :data:`POINTS` points of utilisation and of memory used, in whole percent (one byte
  each, :data:`GAP` where the host sent nothing); network rx/tx and disk read/write
  totals as float32 rings of :data:`POINTS`. A 64-core host with 8 GPUs holds
  64 * 120 + 2 * 8 * 300 + 4 * 300 * 4 = 17,280 bytes of history (about 17 MB for
  1,000 such hosts); total CPU and memory are in ``HostState.history`` already.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from llmaos_agent.protocol import Sample

POINTS: Final = 300
"""Points of the total and per-GPU histories: five minutes at the agent's 1 Hz."""
CORE_POINTS: Final = 120
"""Points of each core's history: two minutes (a 64-core host's 7.7 KB)."""
GAP: Final = 255
"""A byte ring's "no figure" (a GPU that did not say, a core count that changed)."""
MAX_NAMES: Final = 64
"""Interfaces (and, apart, disks) whose rows are kept."""
TEMPS_STALE_S: Final = 15.0
"""Temperatures older than this (by the host's own clock, the samples' ``t``) are not
shown: the agent sends them every 5 s, so three were missed."""
SKIPPED_NET: Final = ("lo",)
"""Interfaces left out of the totals: loopback's bytes never leave the host."""


class ByteRows:
    """A ring of rows of ``width`` bytes (one per core or GPU), the oldest overwritten."""

    __slots__ = ("buf", "cap", "count", "head", "width")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.width = 0
        self.buf = bytearray()
        self.count = 0
        self.head = 0  # the row the next push writes

    def push(self, row: bytes) -> None:
        w = len(row)
        if w != self.width:  # a host that changed shape: its old rows mean nothing now
            self.width, self.buf = w, bytearray(w * self.cap)
            self.count = self.head = 0
        if not w:
            return
        at = self.head * w
        self.buf[at : at + w] = row
        self.head = (self.head + 1) % self.cap
        self.count = min(self.count + 1, self.cap)

    def series(self, i: int) -> list[float | None]:
        """Column ``i``'s values as fractions, oldest first (``None`` for a gap)."""
        w = self.width
        if not 0 <= i < w or not self.count:
            return []
        if self.count < self.cap:
            raw = self.buf[i : self.count * w : w]
        else:
            raw = self.buf[self.head * w + i :: w] + self.buf[i : self.head * w : w]
        return [None if b == GAP else b / 100 for b in raw]

    def nbytes(self) -> int:
        return len(self.buf)


class FloatRing:
    """A ring of float32 values, the oldest overwritten; NaN is a gap."""

    __slots__ = ("buf", "cap", "count", "head")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = array("f")
        self.count = 0
        self.head = 0

    def push(self, v: float) -> None:
        if len(self.buf) < self.cap:
            self.buf.append(v)
        else:
            self.buf[self.head] = v
        self.head = (self.head + 1) % self.cap
        self.count = min(self.count + 1, self.cap)

    def values(self) -> list[float | None]:
        b = self.buf
        raw = list(b) if self.count < self.cap else list(b[self.head :]) + list(b[: self.head])
        return [None if math.isnan(v) else v for v in raw]

    @property
    def last(self) -> float | None:
        if not self.count:
            return None
        v = self.buf[(self.head - 1) % len(self.buf)]
        return None if math.isnan(v) else v

    def nbytes(self) -> int:
        return self.cap * self.buf.itemsize


_PERCENT: Final = {i / 100: i for i in range(101)}
"""A load of two decimals (the agent rounds to two) to its whole percent: ``i / 100`` is
the float that ``0.57`` parses to, so a lookup finds every such load."""


def core_bytes(loads: Sequence[float]) -> bytes:
    """Each core's load as a whole percent, 0..100, one byte each (the cores' ring row)."""
    try:
        # One C call for the whole row: the agent's loads all have two decimals.
        return bytes(map(_PERCENT.__getitem__, loads))
    except KeyError:  # another rounding, or a load over 1: worked out one by one
        return bytes([min(100, round(x * 100)) for x in loads])


def _pct(x: float | None) -> int:
    return GAP if x is None else min(100, max(0, round(x * 100)))


class Rates:
    """The latest (a, b) bytes per second of each name seen, missing names at 0."""

    __slots__ = ("rates", "seen")

    def __init__(self) -> None:
        self.rates: dict[str, tuple[int, int]] = {}
        self.seen: dict[str, int] = {}  # name -> the update it last moved data in

    def update(self, rows: Sequence[tuple[str, int, int]], tick: int) -> None:
        new: dict[str, tuple[int, int]] = {}
        for name, a, b in rows:
            new[name] = (a, b)
            self.seen.pop(name, None)  # re-inserted last: the dict's order is idleness
            self.seen[name] = tick
        while len(self.seen) > MAX_NAMES:
            del self.seen[next(iter(self.seen))]
        self.rates = {n: r for n, r in new.items() if n in self.seen}

    def rows(self) -> list[tuple[str, int, int]]:
        """Every name kept, sorted, with its rates (0 where this sample left it out)."""
        return [(n, *self.rates.get(n, (0, 0))) for n in sorted(self.seen)]

    def total(self, skip: tuple[str, ...] = ()) -> tuple[int, int]:
        a = b = 0
        for n, (x, y) in self.rates.items():
            if n not in skip:
                a += x
                b += y
        return a, b


@dataclass
class HostIO:
    net: Rates = field(default_factory=Rates)
    disk: Rates = field(default_factory=Rates)
    temps: list[int] = field(default_factory=list)
    temps_t: float | None = None
    """The sample time (the host's clock) the temperatures came with."""
    temp_names: list[str] = field(default_factory=list)
    last_t: float | None = None
    """The newest sample's time: temperatures are aged against it, not our clock."""
    cores: ByteRows = field(default_factory=lambda: ByteRows(CORE_POINTS))
    gpu_util: ByteRows = field(default_factory=lambda: ByteRows(POINTS))
    gpu_mem: ByteRows = field(default_factory=lambda: ByteRows(POINTS))
    net_rx: FloatRing = field(default_factory=lambda: FloatRing(POINTS))
    net_tx: FloatRing = field(default_factory=lambda: FloatRing(POINTS))
    disk_read: FloatRing = field(default_factory=lambda: FloatRing(POINTS))
    disk_write: FloatRing = field(default_factory=lambda: FloatRing(POINTS))
    version: int = 0
    """Bumped on every sample, so views can skip work."""

    def add(self, s: Sample) -> None:
        """One sample, live or from the history ring (oldest first)."""
        self.version += 1
        tick = self.version
        self.last_t = s.t
        # With 1,000 hosts this runs 1,000 times a second (bench/fleet_scale.py): what a
        # sample leaves out (no interface or disk moved, no GPUs) is skipped where the
        # result is the same, and the cores' percentages are looked up, not computed.
        if s.net or self.net.rates:
            self.net.update([(r.name, r.rx, r.tx) for r in s.net], tick)
        if s.disk or self.disk.rates:
            self.disk.update([(r.name, r.read, r.write) for r in s.disk], tick)
        if s.temp_names:
            self.temp_names = list(s.temp_names)
        if s.temps:
            self.temps, self.temps_t = list(s.temps), s.t
        self.cores.push(core_bytes(s.cpu))
        gpus = s.gpus
        if gpus or self.gpu_util.width:
            self.gpu_util.push(bytes([_pct(g.util) for g in gpus]))
            self.gpu_mem.push(
                bytes([_pct(g.mem_used / g.mem_total) if g.mem_used is not None
                       and g.mem_total else GAP for g in gpus])
            )  # fmt: skip
        rx, tx = self.net.total(SKIPPED_NET) if self.net.rates else (0, 0)
        self.net_rx.push(rx)
        self.net_tx.push(tx)
        rd, wr = self.disk.total() if self.disk.rates else (0, 0)
        self.disk_read.push(rd)
        self.disk_write.push(wr)

    # ------------------------------------------------------------- figures

    @property
    def net_total(self) -> int:
        """Bytes per second in and out, loopback left out."""
        rx, tx = self.net.total(SKIPPED_NET)
        return rx + tx

    @property
    def disk_total(self) -> int:
        rd, wr = self.disk.total()
        return rd + wr

    def fresh_temps(self) -> list[int]:
        """The temperatures unless they are older than :data:`TEMPS_STALE_S`."""
        if self.temps_t is None or self.last_t is None:
            return []
        if self.last_t - self.temps_t > TEMPS_STALE_S:
            return []
        return self.temps

    def named_temps(self) -> list[tuple[str, int]]:
        """(sensor, °C) of the fresh temperatures, when their names are known (the same
        count); unnamed ones as ``temp N``."""
        temps = self.fresh_temps()
        if len(self.temp_names) == len(temps):
            return list(zip(self.temp_names, temps, strict=True))
        return [(f"temp {i}", t) for i, t in enumerate(temps)]

    def history_bytes(self) -> int:
        rings = (self.net_rx, self.net_tx, self.disk_read, self.disk_write)
        byte_rows = (self.cores, self.gpu_util, self.gpu_mem)
        return sum(r.nbytes() for r in rings) + sum(r.nbytes() for r in byte_rows)


def cpu_temps(named: Sequence[tuple[str, int]]) -> tuple[int | None, int | None]:
    """(package, hottest core) from hwmon's labels: "Package id N" or AMD's "Tctl"/"Tdie"
    for the package, "Core N" for cores; a sensor of neither kind counts as the package
    when no package sensor is there (a one-sensor host's only figure)."""
    pkg: int | None = None
    core: int | None = None
    other: int | None = None
    for name, t in named:
        low = name.lower()
        if low.startswith(("package", "tctl", "tdie", "cpu")):
            pkg = t if pkg is None else max(pkg, t)
        elif low.startswith("core"):
            core = t if core is None else max(core, t)
        else:
            other = t if other is None else max(other, t)
    return (pkg if pkg is not None else other), core
