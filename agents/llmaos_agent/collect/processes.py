"""The process table: the agent's whole cost, so it is read with care.

What cannot change for a process (name, user, command line) is cached per
(pid, create time) and read once; each pass reads only the cheap fields through
``process_iter(attrs=...)``, which shares one ``/proc/PID/stat`` read between
them on Linux. The table is shipped as changes (:func:`diff`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping

import psutil

from llmaos_agent.protocol import MAX_CORES, Proc, ProcDelta

_CHEAP = ["ppid", "cpu_percent", "memory_info", "nice", "status", "create_time"]
_CMD_MAX = 512


def cpulist(cores: Iterable[int]) -> str:
    """Compact Linux cpulist notation: [0, 1, 2, 5] -> "0-2,5"."""
    out: list[str] = []
    run: list[int] = []
    for c in sorted(set(cores)):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(_run(run))
        run = [c]
    if run:
        out.append(_run(run))
    return ",".join(out)


def _run(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def parse_cpulist(text: str) -> list[int]:
    """Inverse of :func:`cpulist`; raises ValueError on anything else.

    Only ASCII digits, ``-`` and ``,`` (``int()`` alone would take "+1", "1_0" and
    other scripts' digits), and core numbers below ``MAX_CORES``, so a typo such as
    "0-4000000000" is refused instead of building a set of four billion cores.
    """
    cores: set[int] = set()
    if not text.strip():
        return []
    for part in text.split(","):
        m = _RANGE.fullmatch(part.strip())
        if m is None:
            raise ValueError(f"bad core range {part.strip()!r}: expected N or N-M")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise ValueError(f"bad core range {part.strip()!r}: {b} is below {a}")
        if b >= MAX_CORES:
            raise ValueError(f"core {b} is out of range (at most {MAX_CORES - 1})")
        cores.update(range(a, b + 1))
    return sorted(cores)


class ProcessCollector:
    def __init__(self) -> None:
        probe = psutil.Process()
        self.has_affinity = hasattr(probe, "cpu_affinity")
        self.has_cpu_num = hasattr(probe, "cpu_num")
        self._attrs = list(_CHEAP)
        if self.has_affinity:
            self._attrs.append("cpu_affinity")
        if self.has_cpu_num:
            self._attrs.append("cpu_num")
        # (pid, create_time) -> (name, user, cmd); rebuilt each pass so it never grows.
        self._static: dict[tuple[int, float], tuple[str, str, str]] = {}
        self._users: dict[int, str] = {}
        self._ncores = psutil.cpu_count() or 1

    def snapshot(self, gpu_mem: Mapping[int, int] | None = None) -> dict[int, Proc]:
        gpu_mem = gpu_mem or {}
        table: dict[int, Proc] = {}
        static: dict[tuple[int, float], tuple[str, str, str]] = {}
        for p in psutil.process_iter(attrs=self._attrs, ad_value=None):
            info = p.info
            ct = info.get("create_time")
            if ct is None:  # vanished or unreadable between listing and reading
                continue
            key = (p.pid, float(ct))
            st = self._static.get(key)
            if st is None:
                st = self._read_static(p)
                if st is None:
                    continue
            static[key] = st
            mem = info.get("memory_info")
            aff = info.get("cpu_affinity")
            table[p.pid] = Proc(
                pid=p.pid,
                ppid=int(info.get("ppid") or 0),
                name=st[0],
                user=st[1],
                cpu=round(float(info.get("cpu_percent") or 0.0), 1),
                rss=int(mem.rss) if mem is not None else 0,
                nice=_nice(info.get("nice")),
                affinity=cpulist(aff) if aff else None,
                core=info.get("cpu_num"),
                status=str(info.get("status") or "?"),
                create_time=round(float(ct), 2),
                gpu_mem=gpu_mem.get(p.pid),
                cmd=st[2],
            )
        self._static = static
        return table

    def _read_static(self, p: psutil.Process) -> tuple[str, str, str] | None:
        try:
            with p.oneshot():
                name = p.name()
                user = self._user(p)
                try:
                    cmd = " ".join(p.cmdline())[:_CMD_MAX]
                except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
                    cmd = ""
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        except psutil.AccessDenied:
            name, user, cmd = "?", "?", ""
        return name[:256], user[:256], cmd or f"[{name}]"[:_CMD_MAX]

    def _user(self, p: psutil.Process) -> str:
        if sys.platform == "win32":
            try:
                return str(p.username())
            except psutil.AccessDenied:
                return "?"
        uid = p.uids().real
        name = self._users.get(uid)
        if name is None:
            try:
                name = str(p.username())
            except (psutil.AccessDenied, KeyError):
                name = str(uid)
            self._users[uid] = name
        return name


def _nice(v: object) -> int | None:
    # Windows reports a priority class (an IntEnum); keep its value.
    return int(v) if isinstance(v, int) else None


def diff(old: Mapping[int, Proc], new: Mapping[int, Proc]) -> ProcDelta:
    """The changes that turn ``old`` into ``new``."""
    upsert = [p for pid, p in new.items() if old.get(pid) != p]
    gone = [pid for pid in old if pid not in new]
    return ProcDelta(full=False, upsert=upsert, gone=gone)


def full(table: Mapping[int, Proc]) -> ProcDelta:
    return ProcDelta(full=True, upsert=list(table.values()), gone=[])


def apply(table: dict[int, Proc], delta: ProcDelta) -> None:
    """Apply a delta in place (the console side of :func:`diff`)."""
    if delta.full:
        table.clear()
    for pid in delta.gone:
        table.pop(pid, None)
    for p in delta.upsert:
        table[p.pid] = p
