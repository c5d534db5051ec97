"""The host's OS as the agent acts on it: core and memory counts, and processes named by
pid and start time (read, renice, pin, signal, find children, wait for exit).

Two implementations of one interface, :class:`HostOS`:

- :class:`LinuxOS`, the standard library alone (``/proc`` through
  :mod:`llmaos_agent.procfs`, ``os.setpriority``, ``os.sched_setaffinity``,
  ``os.pidfd_open`` and ``signal.pidfd_send_signal``). Linux always takes it, psutil
  installed or not: one path whatever the host has (so the bare host's path is the one
  every run tests), and the daemon does not pay psutil's ~3 MB of RSS.
- :class:`PsutilOS` for macOS, Windows and the rest, where psutil is the portable way
  (the console pushes its wheel where it is missing). It runs on Linux too, which is how
  the tests hold the two to the same answers.

A process's identity. On the wire it is its create time as psutil computes it (start
ticks over ``SC_CLK_TCK`` plus the kernel's boot time), with the boot time read once per
process (:func:`procfs.boot_time`) so the value never moves within an agent's life. The
kernel's boot time is derived from the wall clock and moves by whole seconds when the
clock is stepped, so a create time computed in another process, or after a restart, may
be off by such a step; :meth:`HostOS.lookup` therefore also accepts it against the boot
time as read now. Records that outlive a process (the request supervisor's claim and pid
files, the request store) hold a :meth:`HostOS.stamp` instead: on Linux the start time
in seconds since boot, exact and unmoved by any clock step.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal as _signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from llmaos_agent import procfs

if TYPE_CHECKING:
    import psutil

_T = TypeVar("_T")

SIGNALS = ("TERM", "KILL", "INT", "HUP", "QUIT", "STOP", "CONT", "USR1", "USR2")
"""Signals the console may send, by name; nothing else is accepted."""

IDENTITY_SLACK = 0.05
"""Seconds two readings of one process's create time may differ (rounding on the wire)."""

_LINUX_ONLY = "a LinuxOS call on another OS"
_EPOCH_STAMP = 1e9
"""A stamp above this is a create time since the epoch (an older record), not seconds
since boot: no host has been up for 31 years."""


class Gone(Exception):
    """The process does not exist (any more)."""


class Denied(Exception):
    """The OS does not let this user read or change that process."""


@dataclass(frozen=True)
class Features:
    """What process control can do on a platform (the ``hello``'s capabilities)."""

    affinity: bool
    """Processes can be pinned to cores."""
    cpu_num: bool
    """The core a process last ran on is known."""
    signals: tuple[str, ...]
    """The names in :data:`SIGNALS` this OS can deliver."""


def features(platform: str = sys.platform) -> Features:
    """What the agent can do on ``platform`` (``sys.platform``'s spelling)."""
    if platform.startswith("linux"):
        return Features(affinity=True, cpu_num=True, signals=SIGNALS)
    if platform == "win32":
        # psutil pins on Windows; a process is only terminated or killed there.
        return Features(affinity=True, cpu_num=False, signals=("TERM", "KILL"))
    if platform.startswith("freebsd"):
        return Features(affinity=True, cpu_num=True, signals=SIGNALS)
    # macOS has no affinity API and does not say where a process ran.
    return Features(affinity=False, cpu_num=False, signals=SIGNALS)


class Target(NamedTuple):
    """A process found by pid, checked to be the one the caller meant."""

    pid: int
    name: str
    create_time: float


CMDLINE_LIMIT = 32 * 1024
"""Bytes of a command line :meth:`HostOS.detail` reads (the protocol's ``MAX_CMDLINE``)."""


@dataclass
class ProcInfo:
    """One process in detail (:meth:`HostOS.detail`): a field that could not be read is
    None, with the reason in ``unread`` under the field's name."""

    pid: int
    ppid: int
    name: str
    state: str  # the state letter, as ps shows it
    create_time: float  # epoch s, as the process table gives it
    user: str | None = None
    argv: list[str] | None = None
    argv_cut: bool = False
    cwd: str | None = None
    threads: int | None = None
    open_files: int | None = None
    nice: int | None = None
    affinity: list[int] | None = None
    cgroup: str | None = None  # /proc/PID/cgroup, all its lines
    rss: int | None = None
    unread: dict[str, str] = field(default_factory=dict)


class HostOS:
    """Cores, memory and processes; every process method raises :class:`Gone` or
    :class:`Denied` rather than an OS-specific error."""

    features: Features

    def cpu_count(self) -> int:
        raise NotImplementedError

    def physical_cores(self) -> int | None:
        raise NotImplementedError

    def memory(self) -> tuple[int, int, int, int]:
        """Total, available, swap total and swap used, in bytes."""
        raise NotImplementedError

    def boot_time(self) -> float:
        raise NotImplementedError

    def net_counters(self) -> dict[str, tuple[int, int]]:
        """Bytes received and sent since boot, by network interface."""
        raise NotImplementedError

    def disk_counters(self) -> dict[str, tuple[int, int]]:
        """Bytes read and written since boot, by whole disk (no partitions, no loop or RAM
        devices, nothing stacked on other disks: see :func:`procfs.whole_disk`)."""
        raise NotImplementedError

    def temperatures(self) -> list[tuple[str, float]]:
        """The CPU's temperature sensors (package, cores, dies) as (label, degrees C), in a
        stable order; empty where the host has none or the OS does not say."""
        raise NotImplementedError

    def create_time(self, pid: int) -> float:
        """When ``pid`` started, in seconds since the epoch (the wire's form)."""
        raise NotImplementedError

    def stamp(self, pid: int) -> float:
        """``pid``'s identity for a record on disk (see the module's docstring)."""
        raise NotImplementedError

    def same(self, pid: int, stamp: float) -> bool:
        """Whether ``pid`` is the process whose :meth:`stamp` (or, from an older record,
        create time) is ``stamp``; False when it is gone."""
        raise NotImplementedError

    def lookup(self, pid: int, create_time: float) -> Target:
        """``pid``, refused with ``ValueError`` when it is another process than the one
        that started at ``create_time`` (the pid was reused)."""
        raise NotImplementedError

    def name(self, pid: int) -> str:
        raise NotImplementedError

    def detail(self, pid: int, create_time: float | None = None) -> ProcInfo:
        """What can be read of ``pid``: raises :class:`Gone` when it is gone, ``ValueError``
        (as :meth:`lookup`) when ``create_time`` is given and it is another process now,
        and :class:`Denied` only when not even its state can be read; anything else not
        readable (another user's cwd and open files) is None with its reason."""
        raise NotImplementedError

    def status(self, pid: int) -> str:
        """psutil's status names: running, sleeping, stopped, zombie, ..."""
        raise NotImplementedError

    def nice(self, pid: int) -> int:
        raise NotImplementedError

    def set_nice(self, pid: int, nice: int) -> None:
        raise NotImplementedError

    def affinity(self, pid: int) -> list[int]:
        raise NotImplementedError

    def set_affinity(self, pid: int, cores: list[int]) -> None:
        raise NotImplementedError

    def send_signal(self, target: Target, name: str) -> None:
        """Send SIG``name`` to ``target`` and to no other process that took its pid."""
        raise NotImplementedError

    def children(self, pid: int) -> list[int]:
        """Every descendant of ``pid`` (children, theirs, ...)."""
        raise NotImplementedError

    def alive(self, pid: int, stamp: float | None = None) -> bool:
        """``pid`` runs (is not a zombie), and is the process of ``stamp`` if given."""
        try:
            if stamp is not None and not self.same(pid, stamp):
                return False
            return self.status(pid) not in ("zombie", "dead")
        except (Gone, Denied):
            return False

    def wait_gone(self, pid: int, deadline: float, poll: float = 0.02) -> bool:
        """Wait until the process that is ``pid`` now has exited (or is a zombie), until
        ``deadline`` on the monotonic clock; whether it did."""
        try:
            stamp = self.stamp(pid)
        except (Gone, Denied):
            return True
        while time.monotonic() < deadline:
            if not self.alive(pid, stamp):
                return True
            time.sleep(poll)
        return False


TEMP_RESCAN = 60
"""Calls of :meth:`LinuxOS.temperatures` between two looks for hwmon's sensors (a chip's
driver may load late); a sensor that fails to read brings the next look forward."""


class LinuxOS(HostOS):
    """The standard library's Linux: /proc, os.* and pidfds."""

    def __init__(self, *, hwmon: str = procfs.HWMON) -> None:
        """``hwmon``: where the hwmon chips are (another tree in the tests)."""
        self.features = features("linux")
        self._hwmon = hwmon
        self._disks: dict[str, bool] = {}  # diskstats name -> whole disk
        self._sensors: list[tuple[str, str]] = []
        self._sensor_reads = 0

    def cpu_count(self) -> int:
        return procfs.cpu_count()

    def physical_cores(self) -> int | None:
        return procfs.physical_cores()

    def memory(self) -> tuple[int, int, int, int]:
        info = procfs.meminfo()
        total = info.get(b"MemTotal", 0)
        swap_total = info.get(b"SwapTotal", 0)
        swap_used = max(swap_total - info.get(b"SwapFree", swap_total), 0)
        return total, min(procfs.mem_available(info), total), swap_total, swap_used

    def boot_time(self) -> float:
        return procfs.boot_time()

    def net_counters(self) -> dict[str, tuple[int, int]]:
        return procfs.net_dev()

    def disk_counters(self) -> dict[str, tuple[int, int]]:
        known = self._disks
        out: dict[str, tuple[int, int]] = {}
        for name, counts in procfs.diskstats().items():
            whole = known.get(name)
            if whole is None:  # looked up once per name: /sys does not change under it
                if len(known) >= 4096:
                    known.clear()
                whole = known[name] = procfs.whole_disk(name)
            if whole:
                out[name] = counts
        return out

    def temperatures(self) -> list[tuple[str, float]]:
        if self._sensor_reads % TEMP_RESCAN == 0:
            self._sensors = procfs.hwmon_sensors(self._hwmon)
        self._sensor_reads += 1
        out: list[tuple[str, float]] = []
        for label, path in self._sensors:
            try:
                out.append((label, procfs.read_temp(path)))
            except (OSError, ValueError):  # the chip went, or the sensor cannot say now
                self._sensor_reads = 0
        return out

    def _ticks(self, pid: int) -> int:
        with _errors(pid):
            return procfs.start_ticks(pid)

    def create_time(self, pid: int) -> float:
        return self._ticks(pid) / procfs.clock_ticks() + procfs.boot_time()

    def stamp(self, pid: int) -> float:
        return self._ticks(pid) / procfs.clock_ticks()

    def same(self, pid: int, stamp: float) -> bool:
        try:
            since_boot = self._ticks(pid) / procfs.clock_ticks()
        except (Gone, Denied):
            return False
        if stamp < _EPOCH_STAMP:
            return abs(since_boot - stamp) <= IDENTITY_SLACK
        return self._matches(since_boot, stamp)

    def _matches(self, since_boot: float, create_time: float) -> bool:
        if abs(since_boot + procfs.boot_time() - create_time) <= IDENTITY_SLACK:
            return True
        try:  # computed against the boot time of another moment (a stepped clock)
            now = procfs.boot_time(fresh=True)
        except OSError:
            return False
        return abs(since_boot + now - create_time) <= IDENTITY_SLACK

    def lookup(self, pid: int, create_time: float) -> Target:
        with _errors(pid):
            comm, fields = procfs.stat(pid)
            since_boot = int(fields[procfs.START]) / procfs.clock_ticks()
            name = procfs.name(pid, comm)
        ct = since_boot + procfs.boot_time()
        if not self._matches(since_boot, create_time):
            raise ValueError(f"started {ct:.2f}, expected {create_time:.2f}")
        return Target(pid, name, ct)

    def name(self, pid: int) -> str:
        with _errors(pid):
            return procfs.name(pid, procfs.stat(pid)[0])

    def detail(self, pid: int, create_time: float | None = None) -> ProcInfo:
        if sys.platform != "linux":
            raise NotImplementedError(_LINUX_ONLY)
        with _errors(pid):
            comm, f = procfs.stat(pid)
        start = int(f[procfs.START])
        since_boot = start / procfs.clock_ticks()
        if create_time is not None and not self._matches(since_boot, create_time):
            ct = since_boot + procfs.boot_time()
            raise ValueError(f"started {ct:.2f}, expected {create_time:.2f}")
        state = f[0].decode("ascii", "replace")
        info = ProcInfo(
            pid=pid,
            ppid=int(f[procfs.PPID]),
            name=procfs.name(pid, comm),
            state=state if procfs.STATUS.get(f[0]) else "?",
            create_time=round(since_boot + procfs.boot_time(), 2),
            threads=int(f[procfs.THREADS]),
            nice=int(f[procfs.NICE]),
        )
        # Each of these may be refused on its own (another user's cwd and fd table); a file
        # that is not there means the process is gone, unless its stat line is still its own
        # (a zombie has no cwd, no command line, no fd table).
        read = _Reader(info, lambda: self._still(pid, start))
        uid = read("user", lambda: procfs.real_uid(pid))
        if uid is not None:
            info.user = _user_name(uid)
        got = read("argv", lambda: procfs.cmdline_limited(pid, CMDLINE_LIMIT))
        if got is not None:
            info.argv, info.argv_cut = got
        info.cwd = read("cwd", lambda: procfs.cwd(pid))
        info.open_files = read("open_files", lambda: procfs.fd_count(pid))
        info.affinity = read("affinity", lambda: sorted(os.sched_getaffinity(pid)))
        info.cgroup = read("cgroup", lambda: procfs.cgroup(pid))
        rss = read("rss", lambda: procfs.rss_pages(pid))
        if rss is not None:
            info.rss = rss * procfs.page_size()
        if not self._still(pid, start):
            raise Gone(f"pid {pid} is gone")
        return info

    def _still(self, pid: int, start: int) -> bool:
        """Whether ``pid`` is still the process that started at ``start`` ticks."""
        try:
            return procfs.start_ticks(pid) == start
        except OSError:
            return False

    def status(self, pid: int) -> str:
        with _errors(pid):
            return procfs.STATUS.get(procfs.stat(pid)[1][0], "?")

    def nice(self, pid: int) -> int:
        if sys.platform != "linux":
            raise NotImplementedError(_LINUX_ONLY)
        with _errors(pid):
            return os.getpriority(os.PRIO_PROCESS, pid)

    def set_nice(self, pid: int, nice: int) -> None:
        if sys.platform != "linux":
            raise NotImplementedError(_LINUX_ONLY)
        with _errors(pid):
            os.setpriority(os.PRIO_PROCESS, pid, nice)

    def affinity(self, pid: int) -> list[int]:
        if sys.platform != "linux":
            raise NotImplementedError(_LINUX_ONLY)
        with _errors(pid):
            return sorted(os.sched_getaffinity(pid))

    def set_affinity(self, pid: int, cores: list[int]) -> None:
        if sys.platform != "linux":
            raise NotImplementedError(_LINUX_ONLY)
        with _errors(pid):
            os.sched_setaffinity(pid, cores)

    def send_signal(self, target: Target, name: str) -> None:
        if sys.platform != "linux":
            raise NotImplementedError(_LINUX_ONLY)
        sig = getattr(_signal, "SIG" + name)
        pid = target.pid
        with _errors(pid):
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # a kernel before 5.3: check, then kill (a narrow race)
                fd = -1
            try:
                # Checked after the pidfd is open: the pidfd names one process, so if this
                # is still ours, the signal below reaches it and no successor.
                since_boot = procfs.start_ticks(pid) / procfs.clock_ticks()
                if abs(since_boot + procfs.boot_time() - target.create_time) > IDENTITY_SLACK:
                    raise ProcessLookupError(pid)
                if fd >= 0:
                    _signal.pidfd_send_signal(fd, sig)
                else:
                    os.kill(pid, sig)
            finally:
                if fd >= 0:
                    os.close(fd)

    def children(self, pid: int) -> list[int]:
        by_parent: dict[int, list[int]] = {}
        for child, parent in procfs.ppids().items():
            by_parent.setdefault(parent, []).append(child)
        out: list[int] = []
        todo = [pid]
        while todo:
            kids = by_parent.pop(todo.pop(), [])
            out.extend(kids)
            todo.extend(kids)
        return out


class _Reader:
    """Reads one field of a :class:`ProcInfo` at a time: a refusal or an error becomes that
    field's entry in ``unread``; a process found gone raises :class:`Gone`."""

    def __init__(self, info: ProcInfo, still: Callable[[], bool]) -> None:
        self.info = info
        self.still = still

    def __call__(self, name: str, fn: Callable[[], _T]) -> _T | None:
        try:
            return fn()
        except (FileNotFoundError, ProcessLookupError):
            if not self.still():
                raise Gone(f"pid {self.info.pid} is gone") from None
            why = "a zombie: it has none" if self.info.state == "Z" else "not there"
        except PermissionError:
            why = "permission denied (another user's process)"
        except (OSError, ValueError, IndexError) as exc:
            why = f"cannot be read: {exc}"
        self.info.unread[name] = why
        return None


def _user_name(uid: int) -> str:
    """``uid``'s user name, or its number when the passwd database has none."""
    if sys.platform == "win32":
        return str(uid)
    import pwd  # noqa: PLC0415 - POSIX only

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@contextlib.contextmanager
def _errors(pid: int) -> Iterator[None]:
    """The kernel's errors for a process, as :class:`Gone` and :class:`Denied`."""
    try:
        yield
    except (FileNotFoundError, ProcessLookupError):
        raise Gone(f"pid {pid} is gone") from None
    except PermissionError:
        raise Denied(f"pid {pid}: access denied") from None


class PsutilOS(HostOS):
    """psutil's view, for macOS and Windows (and, in the tests, Linux)."""

    def __init__(self, platform: str = sys.platform) -> None:
        import psutil  # noqa: PLC0415 - only where psutil is the way

        self._ps = psutil
        self.features = features(platform)

    @contextlib.contextmanager
    def _errors(self, pid: int) -> Iterator[None]:
        try:
            yield
        except self._ps.NoSuchProcess:
            raise Gone(f"pid {pid} is gone") from None
        except self._ps.AccessDenied:
            raise Denied(f"pid {pid}: access denied") from None

    def _proc(self, pid: int) -> psutil.Process:
        with self._errors(pid):
            return self._ps.Process(pid)

    def cpu_count(self) -> int:
        return self._ps.cpu_count(logical=True) or 1

    def physical_cores(self) -> int | None:
        return self._ps.cpu_count(logical=False)

    def memory(self) -> tuple[int, int, int, int]:
        vm = self._ps.virtual_memory()
        try:
            sw = self._ps.swap_memory()
            swap_total, swap_used = int(sw.total), int(sw.used)
        except (OSError, RuntimeError):  # no swap accounting (some containers)
            swap_total = swap_used = 0
        return int(vm.total), int(vm.available), swap_total, swap_used

    def boot_time(self) -> float:
        return float(self._ps.boot_time())

    def net_counters(self) -> dict[str, tuple[int, int]]:
        try:
            nics = self._ps.net_io_counters(pernic=True)
        except (OSError, RuntimeError):
            return {}
        return {name: (int(c.bytes_recv), int(c.bytes_sent)) for name, c in nics.items()}

    def disk_counters(self) -> dict[str, tuple[int, int]]:
        try:
            disks = self._ps.disk_io_counters(perdisk=True) or {}
        except (OSError, RuntimeError):  # no disk statistics (some containers)
            return {}
        # On Linux psutil lists partitions too; elsewhere its names are whole disks
        # (macOS disk0, Windows PhysicalDrive0).
        linux = sys.platform.startswith("linux")
        return {
            name: (int(c.read_bytes), int(c.write_bytes))
            for name, c in disks.items()
            if not linux or procfs.whole_disk(name)
        }

    def temperatures(self) -> list[tuple[str, float]]:
        sensors = getattr(self._ps, "sensors_temperatures", None)  # Linux and FreeBSD only
        if sensors is None:
            return []
        try:
            chips = sensors()
        except (OSError, RuntimeError):
            return []
        return psutil_temperatures(chips)

    def create_time(self, pid: int) -> float:
        with self._errors(pid):
            return float(self._proc(pid).create_time())

    def stamp(self, pid: int) -> float:
        return self.create_time(pid)

    def same(self, pid: int, stamp: float) -> bool:
        try:
            return abs(self.create_time(pid) - stamp) <= IDENTITY_SLACK
        except (Gone, Denied):
            return False

    def lookup(self, pid: int, create_time: float) -> Target:
        p = self._proc(pid)
        with self._errors(pid):
            ct = float(p.create_time())
            name = p.name()
        if abs(ct - create_time) > IDENTITY_SLACK:
            raise ValueError(f"started {ct:.2f}, expected {create_time:.2f}")
        return Target(pid, name, ct)

    def name(self, pid: int) -> str:
        with self._errors(pid):
            return self._proc(pid).name()

    def detail(self, pid: int, create_time: float | None = None) -> ProcInfo:
        ps = self._ps
        p = self._proc(pid)
        with p.oneshot():
            with self._errors(pid):
                ct = float(p.create_time())
                if create_time is not None and abs(ct - create_time) > IDENTITY_SLACK:
                    raise ValueError(f"started {ct:.2f}, expected {create_time:.2f}")
                info = ProcInfo(
                    pid=pid,
                    ppid=int(p.ppid()),
                    name=p.name(),
                    state=procfs.LETTER.get(str(p.status()), "?"),
                    create_time=round(ct, 2),
                )

            def read(name: str, fn: Callable[[], _T]) -> _T | None:
                try:
                    return fn()
                except ps.NoSuchProcess as exc:
                    if not isinstance(exc, ps.ZombieProcess):
                        raise Gone(f"pid {pid} is gone") from None
                    why = "a zombie: it has none"
                except ps.AccessDenied:
                    why = "permission denied (another user's process)"
                except (OSError, ValueError, NotImplementedError, AttributeError) as exc:
                    why = f"cannot be read: {exc}"
                info.unread[name] = why
                return None

            info.user = read("user", lambda: str(p.username()))
            argv = read("argv", p.cmdline)
            if argv is not None:
                info.argv, info.argv_cut = _cut_argv(argv, CMDLINE_LIMIT)
            info.cwd = read("cwd", p.cwd)
            info.threads = read("threads", p.num_threads)
            nice = read("nice", p.nice)
            info.nice = int(nice) if nice is not None else None
            self._detail_os(p, info, read)
            mem = read("rss", p.memory_info)
            info.rss = int(mem.rss) if mem is not None else None
        if not self.same(pid, ct):
            raise Gone(f"pid {pid} is gone")
        return info

    def _detail_os(self, p: psutil.Process, info: ProcInfo,
                   read: Callable[[str, Callable[[], Any]], Any]) -> None:  # fmt: skip
        """The fields of :meth:`detail` that some OSes lack."""
        # File descriptors where the OS has them (the number /proc/PID/fd lists), handles on
        # Windows.
        count = getattr(p, "num_fds", None) or getattr(p, "num_handles", None)
        if count is not None:
            info.open_files = read("open_files", count)
        else:
            info.unread["open_files"] = "this OS does not say"
        if hasattr(p, "cpu_affinity"):
            got = read("affinity", p.cpu_affinity)
            info.affinity = sorted(got) if got is not None else None
        else:
            info.unread["affinity"] = "this OS does not let processes be pinned to cores"
        if sys.platform.startswith("linux"):
            info.cgroup = read("cgroup", lambda: procfs.cgroup(p.pid))
        else:
            info.unread["cgroup"] = "no cgroups on this OS"

    def status(self, pid: int) -> str:
        with self._errors(pid):
            return str(self._proc(pid).status())

    def nice(self, pid: int) -> int:
        with self._errors(pid):
            return int(self._proc(pid).nice())

    def set_nice(self, pid: int, nice: int) -> None:
        with self._errors(pid):
            self._proc(pid).nice(nice)

    def affinity(self, pid: int) -> list[int]:
        if sys.platform == "darwin":
            raise Denied("this OS does not let processes be pinned to cores")
        with self._errors(pid):
            return sorted(self._proc(pid).cpu_affinity())

    def set_affinity(self, pid: int, cores: list[int]) -> None:
        if sys.platform == "darwin":
            raise Denied("this OS does not let processes be pinned to cores")
        with self._errors(pid):
            self._proc(pid).cpu_affinity(cores)

    def send_signal(self, target: Target, name: str) -> None:
        p = self._proc(target.pid)
        with self._errors(target.pid):
            if abs(float(p.create_time()) - target.create_time) > IDENTITY_SLACK:
                raise Gone(f"pid {target.pid} is gone")
            # psutil refuses a pid reused since the Process was made.
            if name == "KILL":
                p.kill()
            elif name == "TERM":
                p.terminate()
            else:
                p.send_signal(getattr(_signal, "SIG" + name))

    def children(self, pid: int) -> list[int]:
        with self._errors(pid):
            return [c.pid for c in self._proc(pid).children(recursive=True)]


def psutil_temperatures(chips: Mapping[str, Sequence[Any]]) -> list[tuple[str, float]]:
    """``psutil.sensors_temperatures()``'s CPU chips as :meth:`HostOS.temperatures` gives
    them, labelled as :func:`procfs.hwmon_sensors` labels hwmon's (psutil reads the same
    files on Linux)."""
    picked = [(chip, temps) for chip, temps in chips.items() if chip in procfs.CPU_CHIPS]
    rows: list[tuple[str, float]] = []
    for chip, temps in picked:
        for i, t in enumerate(temps, 1):
            rows.append((t.label or (chip if len(temps) == 1 else f"{chip} temp{i}"),
                         float(t.current)))  # fmt: skip
    counts: dict[str, int] = {}
    for label, _ in rows:
        counts[label] = counts.get(label, 0) + 1
    if all(n == 1 for n in counts.values()):
        return rows
    # psutil merges a driver's chips under one name (both sockets' coretemp); a label seen
    # again is the next chip's.
    out: list[tuple[str, float]] = []
    seen: dict[str, int] = {}
    for label, value in rows:
        k = seen[label] = seen.get(label, -1) + 1
        out.append((f"{label} #{k}" if counts[label] > 1 else label, value))
    return out


def _cut_argv(argv: list[str], limit: int) -> tuple[list[str], bool]:
    """``argv`` cut to ``limit`` characters in all (a NUL between each, as the kernel keeps
    them), and whether it was cut."""
    out: list[str] = []
    left = limit
    for arg in argv:
        if left <= 0:
            return out, True
        if len(arg) >= left:
            out.append(arg[:left])
            return out, len(arg) > left or len(out) < len(argv)
        out.append(arg)
        left -= len(arg) + 1
    return out, False


@functools.cache
def host_os() -> HostOS:
    """This host's implementation: :class:`LinuxOS` on Linux, :class:`PsutilOS` elsewhere."""
    if sys.platform == "linux":
        return LinuxOS()
    return PsutilOS()


def wait_gone(pid: int, deadline: float) -> bool:
    """Whether the process that is ``pid`` now exits (or is a zombie) before ``deadline``
    (monotonic); for ``llmaos-agent stop`` and the like."""
    return host_os().wait_gone(pid, deadline)
