"""Linux readings from ``/proc`` and ``/sys`` with the standard library alone.

What the agent used psutil for on Linux, read the way psutil reads it (so the two give
the same numbers; tests/test_procfs.py holds them to it): per-core CPU ticks from
``/proc/stat``, the boot time (its ``btime``), memory and swap from ``/proc/meminfo``,
physical cores from ``/sys``'s topology, and a process's ``stat``, ``status`` and
``cmdline``. Every function here raises ``OSError`` as the kernel gives it:
``FileNotFoundError``/``ProcessLookupError`` for a process that is gone,
``PermissionError`` for one that is not ours to read.

Nothing here imports outside the standard library: a bare host's interpreter runs it.
"""

from __future__ import annotations

import glob
import os
import sys

PROC = "/proc"
_ENC, _ERRS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()

# The state letter of /proc/PID/stat, named as psutil names it (psutil._pslinux's
# PROC_STATUSES, which tests/test_collectors.py holds this to).
STATUS: dict[bytes, str] = {
    b"R": "running",
    b"S": "sleeping",
    b"D": "disk-sleep",
    b"T": "stopped",
    b"t": "tracing-stop",
    b"Z": "zombie",
    b"X": "dead",
    b"x": "dead",
    b"K": "wake-kill",
    b"W": "waking",
    b"I": "idle",
    b"P": "parked",
}

# Fields of /proc/PID/stat (proc(5) numbers them from 1) as indexes into what follows
# the command name: the state, field 3, is index 0.
PPID, UTIME, STIME, NICE, START, CORE = 1, 11, 12, 16, 19, 36

_boot: float | None = None
_clk: int | None = None


def read(path: str, limit: int = 1 << 20) -> bytes:
    """A whole (small) file, in as few reads as it takes; /proc files have no size."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 4096)]
        while chunks[-1] and sum(map(len, chunks)) < limit:
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)[:limit]
    finally:
        os.close(fd)


def clock_ticks() -> int:
    """``SC_CLK_TCK``: the unit of a process's start time and CPU times."""
    global _clk  # noqa: PLW0603 - a per-process constant, read once
    if sys.platform == "win32":
        raise OSError("no clock ticks on Windows")  # this module is for Linux
    if _clk is None:
        _clk = int(os.sysconf("SC_CLK_TCK"))
    return _clk


def page_size() -> int:
    """``SC_PAGE_SIZE``: the unit of ``statm``."""
    if sys.platform == "win32":
        raise OSError("no pages to count on Windows")  # this module is for Linux
    return int(os.sysconf("SC_PAGE_SIZE"))


def boot_time(*, fresh: bool = False) -> float:
    """The kernel's boot time (``btime`` of /proc/stat), in seconds since the epoch.

    Read once per process and kept (``fresh`` reads it again): the kernel derives it from
    the wall clock, so it moves by whole seconds when the clock is stepped, and a
    process's create time (its start ticks over the boot time) must not move with it
    within one agent's life. psutil adds the same two numbers.
    """
    global _boot  # noqa: PLW0603 - read once, see above
    if _boot is None or fresh:
        for line in read(f"{PROC}/stat").splitlines():
            if line.startswith(b"btime "):
                value = float(line.split()[1])
                if _boot is None:
                    _boot = value
                return value
        raise OSError(f"no btime line in {PROC}/stat")
    return _boot


def cpu_count() -> int:
    """Logical cores online, as psutil counts them (``SC_NPROCESSORS_ONLN``)."""
    if sys.platform == "win32":
        return os.cpu_count() or 1  # this module is for Linux
    try:
        n = int(os.sysconf("SC_NPROCESSORS_ONLN"))
    except (ValueError, OSError):
        n = 0
    return n if n > 0 else len(per_core_times()) or 1


def physical_cores() -> int | None:
    """Physical cores: distinct sibling sets in /sys's topology, else /proc/cpuinfo's
    ``physical id``/``cpu cores`` (psutil's two methods, in its order)."""
    base = "/sys/devices/system/cpu/cpu[0-9]*/topology/"
    sets: set[bytes] = set()
    for path in glob.glob(base + "core_cpus_list") or glob.glob(base + "thread_siblings_list"):
        try:
            sets.add(read(path).strip())
        except OSError:
            continue
    if sets:
        return len(sets)
    cores: dict[bytes, int] = {}
    info: dict[bytes, bytes] = {}
    try:
        text = read(f"{PROC}/cpuinfo", 1 << 24)
    except OSError:
        return None
    for raw in [*text.splitlines(), b""]:
        line = raw.strip().lower()
        if not line:
            cpu_cores = info.get(b"cpu cores", b"")
            if b"physical id" in info and cpu_cores.isdigit():
                cores[info[b"physical id"]] = int(cpu_cores)
            info = {}
        elif line.startswith((b"physical id", b"cpu cores")):
            key, _, value = line.partition(b":")
            info[key.strip()] = value.strip()
    return sum(cores.values()) or None


def per_core_times() -> list[tuple[int, ...]]:
    """Each online core's ``/proc/stat`` line as ticks: user, nice, system, idle,
    iowait, irq, softirq, steal, guest, guest_nice (the fields the kernel has)."""
    out: list[tuple[int, ...]] = []
    for line in read(f"{PROC}/stat").splitlines()[1:]:
        if not line.startswith(b"cpu"):
            break  # the cpuN lines come first, together
        out.append(tuple(int(x) for x in line.split()[1:11]))
    return out


def busy_fraction(old: tuple[int, ...], new: tuple[int, ...]) -> float:
    """A core's busy share between two :func:`per_core_times` lines, as psutil's
    ``cpu_percent`` computes it: each field's delta (never below 0: iowait can go back),
    guest time taken out of the total (it is in user and nice already), idle and iowait
    out of the busy time."""
    d = [max(b - a, 0) for a, b in zip(old, new, strict=False)]  # lines may differ in length
    d += [0] * (10 - len(d))
    total = sum(d) - d[8] - d[9]
    if total <= 0:
        return 0.0
    busy = total - d[3] - d[4]
    return min(max(busy / total, 0.0), 1.0)


def meminfo() -> dict[bytes, int]:
    """/proc/meminfo in bytes, by name (``MemTotal``, ``SwapFree``, ...)."""
    out: dict[bytes, int] = {}
    for line in read(f"{PROC}/meminfo").splitlines():
        name, _, rest = line.partition(b":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name] = int(parts[0]) * (1024 if parts[1:] == [b"kB"] else 1)
    return out


def mem_available(info: dict[bytes, int]) -> int:
    """``MemAvailable``; on kernels before 3.14, free plus page cache and buffers."""
    avail = info.get(b"MemAvailable")
    if avail is not None:
        return avail
    return sum(info.get(k, 0) for k in (b"MemFree", b"Cached", b"Buffers", b"SReclaimable"))


# ------------------------------------------------------------------ processes


def parse_stat(data: bytes) -> tuple[bytes, list[bytes]]:
    """``/proc/PID/stat`` as (command name, the fields after it).

    The name is in parentheses and may itself hold spaces and parentheses (a
    process may call itself anything, ``a) b (c`` included), so it ends at the
    *last* ``)``. Raises ValueError on a line that is not a stat line.
    """
    open_ = data.index(b"(")
    close = data.rindex(b")")
    fields = data[close + 2 :].split()
    if len(fields) <= CORE:
        raise ValueError(f"a stat line with {len(fields)} fields after the name")
    return data[open_ + 1 : close], fields


def stat(pid: int) -> tuple[bytes, list[bytes]]:
    """:func:`parse_stat` of ``/proc/PID/stat``; a line that is no stat line reads as a
    process that is gone (``ProcessLookupError``)."""
    try:
        return parse_stat(read(f"{PROC}/{pid}/stat"))
    except ValueError:
        raise ProcessLookupError(f"pid {pid}: no readable stat line") from None


def start_ticks(pid: int) -> int:
    """When the process started, in clock ticks since boot: exact, and unmoved by the wall
    clock, so (pid, start ticks) names one process for the life of the host's boot."""
    return int(stat(pid)[1][START])


def cmdline(pid: int) -> list[str]:
    """The argument vector, split as psutil splits it (a process that rewrote its own
    command line with spaces, as setproctitle does, is split on the spaces)."""
    data = read(f"{PROC}/{pid}/cmdline").decode(_ENC, _ERRS)
    if not data:
        return []
    sep = "\x00" if data.endswith("\x00") else " "
    data = data.removesuffix(sep)
    args = data.split(sep)
    if sep == "\x00" and len(args) == 1 and " " in data:
        args = data.split(" ")
    return args


def name(pid: int, comm: bytes, args: list[str] | None = None) -> str:
    """The process's name as psutil gives it: ``comm`` (the kernel cuts it at 15
    characters), or the command's base name when ``comm`` is a cut-off start of it."""
    text = comm.decode(_ENC, _ERRS)
    if len(text) >= 15:
        if args is None:
            try:
                args = cmdline(pid)
            except OSError:
                args = []
        if args:
            full = os.path.basename(args[0])
            if full.startswith(text):
                return full
    return text


def real_uid(pid: int) -> int:
    """The process's real uid (``Uid:`` of /proc/PID/status, its first number)."""
    for line in read(f"{PROC}/{pid}/status").splitlines():
        if line.startswith(b"Uid:"):
            return int(line.split()[1])
    raise ProcessLookupError(f"pid {pid}: no Uid line in its status")


def ppids() -> dict[int, int]:
    """Every process's parent, by pid (processes that go meanwhile are left out)."""
    out: dict[int, int] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit():
            try:
                out[int(entry)] = int(stat(int(entry))[1][PPID])
            except OSError:
                continue
    return out
