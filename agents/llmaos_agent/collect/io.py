"""Network and disk rates, and the CPU's temperatures, as a sample carries them.

The counters come from :mod:`llmaos_agent.system` (``/proc/net/dev``, ``/proc/diskstats`` and
``/sys/class/hwmon`` on Linux, psutil elsewhere); this module turns them into bytes per
second since the previous call and into the wire's rows, cut to the protocol's bounds.

What is sent, and what is left out (to keep a sample small: issue 16's budget is 600 B a
second for a 64-core host nobody watches the processes of):

- an interface or disk that moved no byte in the interval is left out (absent is 0 B/s);
- ``veth*`` interfaces are left out: each is a container's end of a pair, and the same bytes
  cross the bridge (``docker0``, ``br-*``) that is sent;
- disks are whole disks (no partitions, loop, RAM or zram devices, nothing stacked on other
  disks such as device-mapper or md, whose I/O is their disks' already);
- temperatures every :data:`TEMPS_EVERY_S` seconds, not every sample, and as bare values
  whose names (``temp_names``) come only when they change and every :data:`NAMES_EVERY_S`:
  a two-socket host's 34 sensor labels are more bytes than its 64 core loads.

Names pass as the OS gives them, cut to :data:`~llmaos_agent.protocol.IoName`'s length and
mended where they are not UTF-8 (an interface may be named with any bytes); the console
cleans them when it draws them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Final

from llmaos_agent.protocol import MAX_IO_ROWS, DiskRate, NetRate
from llmaos_agent.system import HostOS, host_os

TEMPS_EVERY_S: Final = 5.0
"""How often the temperatures go out; the samples between carry none."""
NAMES_EVERY_S: Final = 60.0
"""How often the sensors' names go out again though unchanged (a console that attaches
finds them in the history ring within this)."""
NAME_MAX: Final = 64
OFF_ENV: Final = "LLMAOS_AGENT_IO"
"""``off`` (or ``0``): the agent collects no network, disk, temperature or per-process GPU
figures (issue 16's), so their cost can be measured against a run without them."""


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether issue 16's collection is on (:data:`OFF_ENV` does not turn it off)."""
    value = (os.environ if environ is None else environ).get(OFF_ENV, "").strip().lower()
    return value not in ("0", "off", "no", "false")


Counters = dict[str, tuple[int, int]]


class IoCollector:
    """Rates since the previous call (the first covers the time since construction)."""

    def __init__(
        self, hos: HostOS | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``clock``: the monotonic clock the rates and the temperatures' cadence use."""
        self.os = hos or host_os()
        self._clock = clock
        self._t = clock()
        self._net = self._read_net()
        self._disk = self._read_disk()
        self._temps_at: float | None = None
        self._names: list[str] = []
        self._names_at: float | None = None

    def _read_net(self) -> Counters:
        try:
            return self.os.net_counters()
        except (OSError, ValueError):  # no /proc/net/dev here (a sandbox): no rows
            return {}

    def _read_disk(self) -> Counters:
        try:
            return self.os.disk_counters()
        except (OSError, ValueError):
            return {}

    def rates(self) -> tuple[list[NetRate], list[DiskRate]]:
        """Each interface's and disk's bytes per second since the last call."""
        now = self._clock()
        dt, self._t = now - self._t, now
        net, disk = self._read_net(), self._read_disk()
        net_rows = _rates(self._net, net, dt, skip=("veth",))
        disk_rows = _rates(self._disk, disk, dt)
        self._net, self._disk = net, disk
        return (
            [NetRate(name=n, rx=a, tx=b) for n, a, b in net_rows],
            [DiskRate(name=n, read=a, write=b) for n, a, b in disk_rows],
        )

    def temps(self) -> tuple[list[int], list[str]]:
        """The CPU's sensors in whole degrees, once every :data:`TEMPS_EVERY_S` (else
        none), and their names when they are due (else none): see the module's docstring."""
        now = self._clock()
        # 0.9: samples come a little early or late; every fifth of a 1 s clock, not sixth.
        if self._temps_at is not None and now - self._temps_at < TEMPS_EVERY_S * 0.9:
            return [], []
        self._temps_at = now
        try:
            got = self.os.temperatures()[:MAX_IO_ROWS]
        except (OSError, ValueError):
            got = []
        got = [(label, c) for label, c in got if math.isfinite(c)]  # a sensor's NaN or inf
        values = [max(-273, min(1000, round(c))) for _, c in got]
        names = [_name(label) for label, _ in got]
        stale = self._names_at is None or now - self._names_at >= NAMES_EVERY_S * 0.99
        if values and (names != self._names or stale):
            self._names, self._names_at = names, now
            return values, names
        return values, []


def _rates(
    old: Counters, new: Counters, dt: float, skip: tuple[str, ...] = ()
) -> list[tuple[str, int, int]]:
    """(name, a/s, b/s) for each name in both readings that moved, busiest first past the
    protocol's bound; a counter that went back (a device re-created, a wrap) counts 0."""
    if dt <= 0:
        return []
    rows: list[tuple[str, int, int]] = []
    for name, (a1, b1) in new.items():
        was = old.get(name)
        if was is None or (skip and name.startswith(skip)):
            continue
        da, db = max(a1 - was[0], 0), max(b1 - was[1], 0)
        if da or db:
            rows.append((_name(name), round(da / dt), round(db / dt)))
    if len(rows) > MAX_IO_ROWS:
        rows.sort(key=lambda r: r[1] + r[2], reverse=True)
        del rows[MAX_IO_ROWS:]
    rows.sort()
    return rows


def _name(text: str) -> str:
    """Cut to the wire's length; what is not UTF-8 (the OS hands undecodable bytes over as
    lone surrogates, which would stop the sample's encoding) as U+FFFD."""
    text = text[:NAME_MAX]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text
