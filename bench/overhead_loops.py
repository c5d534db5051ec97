"""The probes and the bare loops of bench/agent_overhead.py.

The probes read a process's CPU ticks, memory high-water mark and state from /proc, for
every row of the benchmark alike. The bare loops sample what the agent samples and
nothing else (no wire), through psutil or straight from /proc: the floors the agent is
measured against. They run as ``agent_overhead.py --bare-loop KIND`` subprocesses.
"""

from __future__ import annotations

import os
import time
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# The fields the agent reads per process on every pass (llmaos_agent.collect.processes);
# name, username and cmdline it reads once per (pid, create time), and so does the loop.
PROC_ATTRS = [
    "ppid",
    "cpu_percent",
    "memory_info",
    "nice",
    "status",
    "create_time",
    "cpu_affinity",
    "cpu_num",
]


# --------------------------------------------------------------------------- /proc


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime+stime, cutime+cstime) of ``pid`` in clock ticks, threads included."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    rest = data[data.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state): utime, stime, cutime, cstime are fields 14 to 17.
    return int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def status_kb(pid: int, *keys: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def count_pids() -> int:
    return sum(1 for d in os.listdir("/proc") if d.isdigit())


# ---------------------------------------------------------------- the bare loops


Static = dict[tuple[int, float], tuple[str, str, list[str]]]


def read_static(psutil: Any, pid: int) -> tuple[str, str, list[str]]:
    """What cannot change for a process, read once per (pid, create time)."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            return p.name(), p.username(), p.cmdline()
    except psutil.Error:
        return "?", "?", []


def psutil_pass(psutil: Any, attrs: list[str], static: Static) -> Static:
    """One process-table pass the way the agent reads it: process_iter with its attrs."""
    seen: Static = {}
    for p in psutil.process_iter(attrs=attrs, ad_value=None):
        ct = p.info["create_time"]
        if ct is None:
            continue
        key = (p.pid, ct)
        st = static.get(key)
        seen[key] = st if st is not None else read_static(psutil, p.pid)
    return seen


class DirectPass:
    """The same fields from one read of /proc/PID/stat plus sched_getaffinity (Linux).

    Not a contender: the floor for a collector that skips psutil's per-process
    machinery, as the agent's Linux collector does (which reads statm for RSS too).
    ppid, state, utime+stime (for CPU %), nice, start time, RSS and the last core all
    come from the stat line.
    """

    def __init__(self) -> None:
        self.prev: dict[int, tuple[int, int]] = {}  # pid -> (start ticks, cpu ticks)
        self.t_prev = time.monotonic()

    def __call__(self, psutil: Any, attrs: list[str], static: Static) -> Static:
        now = time.monotonic()
        dt = max(now - self.t_prev, 1e-6) * CLK_TCK
        seen: Static = {}
        prev: dict[int, tuple[int, int]] = {}
        rows = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    data = f.read()
                affinity = os.sched_getaffinity(pid)
            except OSError:
                continue
            r = data[data.rindex(b")") + 2 :].split()
            start, ticks = int(r[19]), int(r[11]) + int(r[12])
            old = self.prev.get(pid)
            cpu = (ticks - old[1]) / dt * 100 if old and old[0] == start else 0.0
            prev[pid] = (start, ticks)
            # state, ppid, cpu %, nice, rss pages, core, affinity
            rows.append((r[0], int(r[1]), cpu, int(r[16]), int(r[21]), int(r[36]), affinity))
            key = (pid, float(start))
            st = static.get(key)
            seen[key] = st if st is not None else read_static(psutil, pid)
        self.prev, self.t_prev = prev, now
        return seen


def bare_loop(kind: str, interval: float = 1.0, proc_every: int = 2) -> None:
    """A bare loop: what the agent samples, and nothing else (no wire). Runs until killed.

    Cores, memory, swap and load every ``interval``; the process table every
    ``proc_every`` ticks, read by psutil as the agent does (``kind="psutil"``) or
    straight from /proc (``kind="direct"``).
    """
    import psutil

    probe = psutil.Process()
    attrs = [a for a in PROC_ATTRS if a not in ("cpu_affinity", "cpu_num") or hasattr(probe, a)]
    one_pass = psutil_pass if kind == "psutil" else DirectPass()
    static: Static = {}
    psutil.cpu_percent(percpu=True)
    deadline = time.monotonic()
    tick = 0
    while True:
        psutil.cpu_percent(percpu=True)
        psutil.virtual_memory()
        psutil.swap_memory()
        psutil.getloadavg()
        if tick % proc_every == 0:
            static = one_pass(psutil, attrs, static)
        tick += 1
        deadline += interval
        delay = deadline - time.monotonic()
        if delay < 0:  # fell behind: skip, do not burst (as the agent does)
            deadline = time.monotonic()
            delay = 0.0
        time.sleep(delay)
