"""The process table: the agent's whole cost, so it is read with care.

What cannot change for a process (name, user, command line) is cached per
(pid, create time) and read once. The fields that do change are read on every pass:

- on Linux, with the standard library alone: from one read of ``/proc/PID/stat`` (ppid,
  state, CPU ticks, nice, start time, last core), one of ``/proc/PID/statm`` (RSS; only
  where that stat line changed, or every few passes) and ``sched_getaffinity``, and the
  static fields from ``status`` (the real uid) and ``cmdline``, all as psutil reads them
  (:mod:`llmaos_agent.procfs`). psutil opens ``stat`` more than once, ``statm`` and
  ``/sys/devices/system/cpu/online`` per process per pass, about six times the cost
  (docs/BENCHMARKS.md);
- elsewhere (macOS, Windows), through ``psutil.process_iter(attrs=...)``; the same path
  runs on Linux when asked for (``fast=False``), which is how the tests compare them.

A process whose fields did not change keeps its previous :class:`Proc` object,
and the table is shipped as changes (:func:`llmaos_agent.procdelta.diff`).

A process's ``status`` is its state letter as ps and top show it (``R``, ``S``, ``D``,
``T`` stopped, ``t`` stopped by a tracer, ``Z`` zombie, ``I`` idle kernel thread): on Linux
straight from ``/proc/PID/stat``, on the psutil path from psutil's status name
(:data:`llmaos_agent.procfs.LETTER`), so both give the same letter.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from llmaos_agent import procfs

# diff, full and apply live in procdelta (no collector there, so the console can apply a
# delta without loading this one); re-exported here for this module's callers.
from llmaos_agent.procdelta import apply, diff, full
from llmaos_agent.procfs import STATUS as _STATUS
from llmaos_agent.procfs import parse_stat
from llmaos_agent.protocol import MAX_CORES, Proc
from llmaos_agent.system import features

if TYPE_CHECKING:
    import psutil

__all__ = [
    "_STATUS",
    "ProcessCollector",
    "apply",
    "cpulist",
    "diff",
    "full",
    "linux_proc_available",
    "parse_cpulist",
    "parse_stat",
]

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


_PPID, _UTIME, _STIME, _NICE, _START, _CORE = (
    procfs.PPID,
    procfs.UTIME,
    procfs.STIME,
    procfs.NICE,
    procfs.START,
    procfs.CORE,
)

_Static = tuple[str, str, str]
# pid -> (start ticks, cpu ticks, the raw fields the Proc was built from, the Proc, the
# stat line it was read from)
_Prev = tuple[int, int, tuple[object, ...], Proc, bytes]

RSS_REFRESH_PASSES = 10
"""A process whose stat line did not change since the last pass (it took no CPU tick, no
page fault, no state change) keeps its RSS figure without a ``statm`` read; every this
many passes it is read anyway (spread over the passes by pid), for what changes RSS
without the process faulting: reclaim, swap-out, khugepaged."""


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


class _StatFiles:
    """``/proc/PID/stat`` kept open between passes and read again with ``pread``: an open
    and a close fewer per process and pass, about half the cost of reading it.

    An open stat file names the process, not the pid: once that process is gone it reads
    as ESRCH, and a pid taken by a new process is opened afresh. At most :attr:`cap` are
    held, half the soft limit on open files less a reserve, so the daemon's sockets, its
    DB and its children's pipes always have room; past that, files are opened per read.
    Not inherited by children (Python opens files close-on-exec)."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}
        soft = 1024
        if sys.platform != "win32":
            with contextlib.suppress(ValueError, OSError):
                soft = os.sysconf("SC_OPEN_MAX")
        self.cap = max(0, soft // 2 - 128)

    def read(self, pid: int, entry: str) -> bytes:
        if sys.platform == "win32":
            raise RuntimeError("the /proc fast path is Linux's")
        fd = self.fds.get(pid)
        if fd is not None:
            with contextlib.suppress(OSError):
                data = os.pread(fd, 4096, 0)
                if data:
                    return data
            del self.fds[pid]  # that process is gone; the pid may be another's now
            os.close(fd)
        path = f"/proc/{entry}/stat"
        if len(self.fds) >= self.cap:
            return _read(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.pread(fd, 4096, 0)
        except OSError:
            os.close(fd)
            raise
        self.fds[pid] = fd
        return data

    def keep(self, live: Mapping[int, object]) -> None:
        """Close the files of processes not in ``live`` (gone, or unreadable this pass)."""
        fds = self.fds
        for pid in [p for p in fds if p not in live]:
            os.close(fds.pop(pid))

    def close(self) -> None:
        self.keep({})


def linux_proc_available(proc: str = "/proc") -> bool:
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "sched_getaffinity")
        and hasattr(os, "sysconf")
        and os.path.exists(f"{proc}/self/stat")
    )


class ProcessCollector:
    def __init__(self, *, fast: bool | None = None) -> None:
        """``fast``: read /proc directly (Linux); None picks it where it is available."""
        self.fast = linux_proc_available() if fast is None else fast
        if self.fast and not linux_proc_available():
            raise RuntimeError("the /proc fast path needs Linux with /proc mounted")
        if self.fast:
            can = features("linux")
            self.has_affinity, self.has_cpu_num = can.affinity, can.cpu_num
        else:
            import psutil  # noqa: PLC0415 - the portable path only; none on Linux's

            self._ps = psutil
            self.has_affinity = hasattr(psutil.Process, "cpu_affinity")
            self.has_cpu_num = hasattr(psutil.Process, "cpu_num")
        self._attrs = list(_CHEAP)
        if self.has_affinity:
            self._attrs.append("cpu_affinity")
        if self.has_cpu_num:
            self._attrs.append("cpu_num")
        # (pid, create time) -> (name, user, cmd); rebuilt each pass so it never grows.
        # The fast path keys it by the start time in clock ticks, which is exact.
        self._static: dict[tuple[int, float], _Static] = {}
        self._users: dict[int, str] = {}
        # The fast path's state between passes.
        self._prev: dict[int, _Prev] = {}
        self._t_prev: float | None = None
        self._pass = 0
        self._stat_files = _StatFiles()
        self._affinity_text: dict[frozenset[int], str] = {}
        self._last_affinity: tuple[set[int], str] | None = None
        if self.fast:
            self._clk = float(procfs.clock_ticks())
            self._page = procfs.page_size()
            # Read once per process (procfs caches it), so a process's create time never
            # moves, and it is the one process control checks against (system.py);
            # psutil computes its create_time from the same two numbers.
            self._boot = procfs.boot_time()

    def snapshot(self, gpu_mem: Mapping[int, int] | None = None) -> dict[int, Proc]:
        if self.fast:
            return self._snapshot_proc(gpu_mem or {})
        return self._snapshot_psutil(gpu_mem or {})

    def _snapshot_proc(self, gpu_mem: Mapping[int, int]) -> dict[int, Proc]:
        """One pass over /proc: ``stat``, ``statm`` and ``sched_getaffinity`` per process.

        CPU % is the tick delta since the previous pass over the wall time between the
        passes, 100 being one core, and 0.0 on a process's first pass, as psutil's
        ``cpu_percent`` gives it. A process whose stat line is byte for byte the last
        pass's, at 0% then and now, keeps its row after one ``sched_getaffinity`` (most
        of a large table: idle processes); ``statm`` is read when the stat line changed
        (see :data:`RSS_REFRESH_PASSES`).
        """
        now = time.monotonic()
        t_prev = self._t_prev
        # percent per clock tick of CPU time over the wall time since the last pass
        per_tick = 100.0 / ((now - t_prev) * self._clk) if t_prev and now > t_prev else 0.0
        prev = self._prev
        npass = self._pass = self._pass + 1
        affinity_of = self._affinity
        read_stat = self._stat_files.read
        table: dict[int, Proc] = {}
        cur: dict[int, _Prev] = {}
        static: dict[tuple[int, float], _Static] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():  # self, net, sys, ...
                continue
            pid = int(entry)
            try:
                data = read_stat(pid, entry)
            except OSError:
                # Gone since the listing (FileNotFoundError, ProcessLookupError), or
                # not ours to read (PermissionError): as psutil, leave it out.
                continue
            old = prev.get(pid)
            # Nothing in stat moved: the same process (same start), no tick, no fault.
            same = old is not None and old[4] == data and (pid + npass) % RSS_REFRESH_PASSES
            if same and old is not None and old[3].cpu == 0.0:
                proc = old[3]
                if affinity_of(pid) == proc.affinity and gpu_mem.get(pid) == proc.gpu_mem:
                    static[(pid, old[0])] = old[2][8]  # type: ignore[assignment]
                    cur[pid] = old
                    table[pid] = proc
                    continue
            got = self._row(entry, data, old, bool(same), per_tick, gpu_mem, static)
            if got is not None:
                cur[pid] = got
                table[pid] = got[3]
        self._stat_files.keep(cur)
        self._prev, self._t_prev, self._static = cur, now, static
        return table

    def close(self) -> None:
        """Close the stat files held between passes."""
        self._stat_files.close()

    def _row(
        self,
        entry: str,
        data: bytes,
        old: _Prev | None,
        same: bool,
        per_tick: float,
        gpu_mem: Mapping[int, int],
        static: dict[tuple[int, float], _Static],
    ) -> _Prev | None:
        """A process's row from its stat line (``same``: the last pass's, so its RSS
        stands); None when it is gone or unreadable."""
        pid = int(entry)
        try:
            comm, r = parse_stat(data)
            start = int(r[_START])
            ticks = int(r[_UTIME]) + int(r[_STIME])
            if same and old is not None:
                rss: int = old[2][3]  # type: ignore[assignment]
            else:
                # statm, not stat's field 24: since Linux 6.2 that one is a per-CPU
                # approximation, off by up to a batch of pages per CPU (psutil and htop
                # read statm too).
                rss = int(_read(f"/proc/{entry}/statm").split()[1])
        except (OSError, ValueError, IndexError):
            return None
        if old is not None and old[0] != start:
            old = None  # the pid was reused by a new process
        cpu = round(max(ticks - old[1], 0) * per_tick, 1) if old is not None else 0.0
        affinity = self._affinity(pid)
        key = (pid, start)
        st = self._static.get(key)
        if st is None:
            st = self._read_static_pid(pid, comm)
            if st is None:  # exited meanwhile
                return None
        static[key] = st
        gm = gpu_mem.get(pid)
        raw = (r[_PPID], r[0], cpu, rss, r[_NICE], affinity, r[_CORE], gm, st)
        if old is not None and old[2] == raw:
            proc = old[3]  # nothing changed: keep the object (diff skips it at once)
        else:
            proc = Proc(
                pid=pid,
                ppid=int(r[_PPID]),
                name=st[0],
                user=st[1],
                cpu=cpu,
                rss=rss * self._page,
                nice=int(r[_NICE]),
                affinity=affinity,
                core=int(r[_CORE]),
                status=_letter(r[0]),
                create_time=round(start / self._clk + self._boot, 2),
                gpu_mem=gm,
                cmd=st[2],
            )
        return (start, ticks, raw, proc, data)

    def _affinity(self, pid: int) -> str | None:
        if sys.platform != "linux":
            raise RuntimeError("the /proc fast path is Linux's")
        try:
            mask = os.sched_getaffinity(pid)
        except OSError:
            return None
        return self._cpulist(mask) if mask else None

    def _cpulist(self, mask: set[int]) -> str:
        """``cpulist(mask)``, cached: nearly every process has the same mask."""
        last = self._last_affinity
        if last is not None and last[0] == mask:
            return last[1]
        key = frozenset(mask)
        text = self._affinity_text.get(key)
        if text is None:
            if len(self._affinity_text) >= 256:
                self._affinity_text.clear()
            text = self._affinity_text[key] = cpulist(mask)
        self._last_affinity = (mask, text)
        return text

    def _read_static_pid(self, pid: int, comm: bytes) -> _Static | None:
        """Name, user and command line from /proc, as psutil gives them; None when the
        process is gone."""
        try:
            uid = procfs.real_uid(pid)
        except (FileNotFoundError, ProcessLookupError):
            return None
        except (OSError, ValueError, IndexError):
            uid = None
        try:
            args = procfs.cmdline(pid)
        except (FileNotFoundError, ProcessLookupError):
            return None
        except OSError:
            args = []
        name = procfs.name(pid, comm, args)
        user = "?" if uid is None else self._user_of(uid)
        cmd = " ".join(args)[:_CMD_MAX]
        return _static(name, user, cmd)

    def _user_of(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            name = str(uid)
            if sys.platform != "win32":
                import pwd  # noqa: PLC0415 - POSIX only

                with contextlib.suppress(KeyError):  # no such user: its number, as psutil
                    name = pwd.getpwuid(uid).pw_name
            self._users[uid] = name
        return name

    def _snapshot_psutil(self, gpu_mem: Mapping[int, int]) -> dict[int, Proc]:
        table: dict[int, Proc] = {}
        static: dict[tuple[int, float], _Static] = {}
        ps = self._ps
        for p in ps.process_iter(attrs=self._attrs, ad_value=None):
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
                status=procfs.LETTER.get(str(info.get("status")), "?"),
                create_time=round(float(ct), 2),
                gpu_mem=gpu_mem.get(p.pid),
                cmd=st[2],
            )
        self._static = static
        return table

    def _read_static(self, p: psutil.Process) -> _Static | None:
        ps = self._ps
        try:
            with p.oneshot():
                name = p.name()
                user = self._user(p)
                try:
                    cmd = " ".join(p.cmdline())[:_CMD_MAX]
                except (ps.AccessDenied, ps.ZombieProcess, OSError):
                    cmd = ""
        except (ps.NoSuchProcess, ps.ZombieProcess):
            return None
        except ps.AccessDenied:
            name, user, cmd = "?", "?", ""
        return _static(name, user, cmd)

    def _user(self, p: psutil.Process) -> str:
        ps = self._ps
        if sys.platform == "win32":
            try:
                return str(p.username())
            except ps.AccessDenied:
                return "?"
        uid = p.uids().real
        name = self._users.get(uid)
        if name is None:
            try:
                name = str(p.username())
            except (ps.AccessDenied, KeyError):
                name = str(uid)
            self._users[uid] = name
        return name


_LETTERS = {k: k.decode() for k in _STATUS}


def _letter(state: bytes) -> str:
    """The stat line's state letter, as the wire carries it; "?" for none the kernel
    documents (the field is one letter from a fixed set)."""
    return _LETTERS.get(state, "?")


def _nice(v: object) -> int | None:
    # Windows reports a priority class (an IntEnum); keep its value.
    return int(v) if isinstance(v, int) else None


def _static(name: str, user: str, cmd: str) -> _Static:
    """A process's name, user and command line as the wire can carry them: cut to their
    limits, and what is not UTF-8 (bytes of a name or argv that do not decode, which the
    OS hands over as lone surrogates) as U+FFFD. Any user can name a process so; unmended,
    it would stop every sample's encoding, and with it the daemon."""
    name, user, cmd = _utf8(name)[:256], _utf8(user)[:256], _utf8(cmd)[:_CMD_MAX]
    return name, user, cmd or f"[{name}]"[:_CMD_MAX]


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text
