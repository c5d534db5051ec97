"""Linux readings from ``/proc`` and ``/sys`` with the standard library alone.

What the agent used psutil for on Linux, read the way psutil reads it (so the two give
the same numbers; tests/test_procfs.py holds them to it): per-core CPU ticks from
``/proc/stat``, the boot time (its ``btime``), memory and swap from ``/proc/meminfo``,
physical cores from ``/sys``'s topology, network and disk byte counters from
``/proc/net/dev`` and ``/proc/diskstats``, CPU temperatures from ``/sys/class/hwmon``, and a
process's ``stat``, ``status``, ``cmdline``, ``cwd``, ``fd`` and ``cgroup``. Every function
here raises ``OSError`` as the kernel gives it: ``FileNotFoundError``/``ProcessLookupError``
for a process that is gone, ``PermissionError`` for one that is not ours to read.

Nothing here imports outside the standard library: a bare host's interpreter runs it.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
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

# The state letters ps shows (and the wire carries), from psutil's status names: how the
# psutil path turns its names back into the letters /proc gives the stdlib path. macOS and
# the BSDs add "locked" and "waiting"; Windows knows "running" and "stopped".
LETTER: dict[str, str] = {v: k.decode() for k, v in STATUS.items() if k not in (b"x",)}
LETTER.update({"locked": "L", "waiting": "W", "suspended": "T"})

# Fields of /proc/PID/stat (proc(5) numbers them from 1) as indexes into what follows
# the command name: the state, field 3, is index 0.
PPID, UTIME, STIME, NICE, THREADS, START, CORE = 1, 11, 12, 16, 17, 19, 36

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


def cmdline_limited(pid: int, limit: int) -> tuple[list[str], bool]:
    """The argument vector as the kernel keeps it (split on its NULs, an argument with
    spaces kept whole), at most ``limit`` bytes of it, and whether it was longer.

    A process that rewrote its command line as one string (setproctitle) is one argument
    here; :func:`cmdline` splits that on spaces, as psutil does for the table."""
    data = read(f"{PROC}/{pid}/cmdline", limit + 1)
    cut = len(data) > limit
    data = data[:limit]
    if not data:
        return [], False
    if not cut:
        data = data.removesuffix(b"\x00")
    return data.decode(_ENC, _ERRS).split("\x00"), cut


def cwd(pid: int) -> str:
    """The process's working directory (another user's is refused: PermissionError)."""
    return os.readlink(f"{PROC}/{pid}/cwd")


FD_COUNT_CAP = 1 << 16
"""Most descriptors counted one by one (a process may hold a million; the detail call is
answered on the daemon's loop, which samples for every client)."""


def fd_count(pid: int) -> int:
    """How many file descriptors the process holds open (another user's: PermissionError).

    Linux 6.2 and later give the count as the size of ``/proc/PID/fd`` without listing it;
    older kernels say 0 there, and the listing stops at :data:`FD_COUNT_CAP`."""
    path = f"{PROC}/{pid}/fd"
    with os.scandir(path) as entries:  # opened first: the permission check, as before
        size = os.stat(path).st_size
        if size > 0:
            return size
        return sum(1 for _ in itertools.islice(entries, FD_COUNT_CAP))


def cgroup(pid: int) -> str:
    """``/proc/PID/cgroup`` (its first 8 KiB): cgroup v2's one line ``0::/path``, or v1's
    one per hierarchy."""
    return read(f"{PROC}/{pid}/cgroup", 8192).decode(_ENC, _ERRS)


def rss_pages(pid: int) -> int:
    """Resident pages (``statm``'s second field, as psutil and htop read it)."""
    return int(read(f"{PROC}/{pid}/statm", 4096).split()[1])


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


# ------------------------------------------------------------------ network and disks

SECTOR = 512
"""The unit of /proc/diskstats' sector counts, whatever the device's sector size (the
kernel's, and psutil's DISK_SECTOR_SIZE)."""

NOT_DISKS = ("loop", "ram", "zram")
"""Block devices that are no disk: their I/O is memory's, or counted again on the disk
below (a loop device's file)."""


def parse_net_dev(data: bytes) -> dict[str, tuple[int, int]]:
    """``/proc/net/dev`` as interface -> (bytes received, bytes sent)."""
    out: dict[str, tuple[int, int]] = {}
    for line in data.splitlines()[2:]:  # two header lines
        name, sep, rest = line.partition(b":")
        fields = rest.split()
        if not sep or len(fields) < 9:
            continue
        try:
            out[name.strip().decode(_ENC, _ERRS)] = (int(fields[0]), int(fields[8]))
        except ValueError:
            continue
    return out


def net_dev() -> dict[str, tuple[int, int]]:
    """:func:`parse_net_dev` of this network namespace's ``/proc/net/dev``."""
    return parse_net_dev(read(f"{PROC}/net/dev"))


def parse_diskstats(data: bytes) -> dict[str, tuple[int, int]]:
    """``/proc/diskstats`` as device -> (bytes read, bytes written), every device the
    kernel lists (partitions too; :func:`whole_disk` tells them apart)."""
    out: dict[str, tuple[int, int]] = {}
    for line in data.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            # major minor name reads merged sectors ms writes merged sectors ...
            read_b, write_b = int(fields[5]) * SECTOR, int(fields[9]) * SECTOR
        except ValueError:
            continue
        out[fields[2].decode(_ENC, _ERRS)] = (read_b, write_b)
    return out


def diskstats() -> dict[str, tuple[int, int]]:
    return parse_diskstats(read(f"{PROC}/diskstats"))


def whole_disk(name: str, sys_block: str = "/sys/block") -> bool:
    """Whether ``name`` (a /proc/diskstats name) is a whole disk: listed in /sys/block (a
    partition is not; it sits under its disk), not a loop, RAM or zram device, and not
    stacked on other devices (device-mapper, md RAID: their I/O is their disks' already).
    Without /sys, every name but those of :data:`NOT_DISKS` counts."""
    if name.startswith(NOT_DISKS):
        return False
    if not os.path.isdir(sys_block):
        return True
    entry = f"{sys_block}/{name.replace('/', '!')}"  # cciss/c0d0 is cciss!c0d0 there
    if not os.path.isdir(entry):
        return False
    try:
        return not os.listdir(f"{entry}/slaves")
    except OSError:
        return True


# ------------------------------------------------------------------ temperatures

HWMON = "/sys/class/hwmon"
CPU_CHIPS = frozenset({"coretemp", "k10temp", "k8temp", "zenpower", "cpu_thermal", "cpu-thermal",
                       "via_cputemp", "soc_thermal"})  # fmt: skip
"""hwmon drivers whose sensors are the CPU's (package, cores, dies); other chips (NVMe
drives, ACPI zones, boards) are left out, and GPUs report their own through NVML."""


def hwmon_sensors(root: str = HWMON) -> list[tuple[str, str]]:
    """The CPU's temperature sensors as (label, path of its ``temp*_input``), in chip and
    sensor order: the label is the driver's (``temp*_label``: "Package id 0", "Core 3",
    "Tctl"), else the chip's name with the sensor's number. A label that more than one
    chip uses (each socket's coretemp has a "Core 0") gets the chip's ordinal among its
    namesakes: "Core 0 #1"."""
    try:
        entries = os.listdir(root)
    except OSError:
        return []
    chips: list[tuple[str, list[tuple[str, str]]]] = []
    for entry in sorted(entries, key=_natural):
        got = _chip_sensors(f"{root}/{entry}")
        if got is not None:
            chips.append(got)
    seen: dict[str, int] = {}
    for _, sensors in chips:
        for label, _ in sensors:
            seen[label] = seen.get(label, 0) + 1
    ordinal: dict[str, int] = {}
    out: list[tuple[str, str]] = []
    for chip, sensors in chips:
        k = ordinal[chip] = ordinal.get(chip, -1) + 1
        out.extend((f"{label} #{k}" if seen[label] > 1 else label, path) for label, path in sensors)
    return out


def _chip_sensors(base: str) -> tuple[str, list[tuple[str, str]]] | None:
    """One hwmon chip's name and its (label, input path) pairs; None when it is not a CPU's
    (:data:`CPU_CHIPS`) or cannot be read."""
    try:
        chip = read(f"{base}/name", 256).strip().decode(_ENC, _ERRS)
        if chip not in CPU_CHIPS:
            return None
        names = os.listdir(base)
    except OSError:
        return None
    inputs = sorted((n for n in names if n.startswith("temp") and n.endswith("_input")),
                    key=_natural)  # fmt: skip
    sensors: list[tuple[str, str]] = []
    for n in inputs:
        num = n[4:-6]
        try:
            label = read(f"{base}/temp{num}_label", 256).strip().decode(_ENC, _ERRS)
        except OSError:
            label = ""
        if not label:
            label = chip if len(inputs) == 1 else f"{chip} temp{num}"
        sensors.append((label, f"{base}/{n}"))
    return chip, sensors


def read_temp(path: str) -> float:
    """One ``temp*_input`` in degrees Celsius (the file holds millidegrees)."""
    return int(read(path, 64).strip()) / 1000.0


_NUMBERED = re.compile(r"([^0-9]*)([0-9]*)")


def _natural(name: str) -> tuple[str, int]:
    """hwmon10 after hwmon9, temp10_input after temp9_input."""
    m = _NUMBERED.match(name)
    head, digits = (m.group(1), m.group(2)) if m else (name, "")
    return head, int(digits) if digits else -1
