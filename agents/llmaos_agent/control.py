"""Process control as htop offers it (renice, affinity, signals), validated before acting.

Every call names its process by pid *and* create time, so a pid that exited and
was reused by another process is refused rather than acted on. Protected processes
(pid 1, this agent and its clients' bridges, sshd) are refused whatever the caller's
rights. A refusal raises :class:`Refused` with a message for the operator and
changes nothing.
"""

from __future__ import annotations

import os
import signal as _signal
import sys

import psutil

from llmaos_agent.protocol import Change

NICE_MIN, NICE_MAX = -20, 19
CREATE_TIME_SLACK = 0.05
"""Seconds two readings of one process's create time may differ (rounding on the wire)."""

SIGNALS = ("TERM", "KILL", "INT", "HUP", "QUIT", "STOP", "CONT", "USR1", "USR2")
"""Signals the console may send, by name; nothing else is accepted."""

PROTECTED_NAMES = frozenset({"sshd", "sshd-session", "sshd-auth", "init", "systemd"})


class Refused(Exception):
    """A change the agent will not make; nothing was changed."""


def _process(pid: int, create_time: float, protected: frozenset[int]) -> psutil.Process:
    if pid <= 1:
        raise Refused(f"pid {pid} is protected (the system's init)")
    if pid in protected:
        raise Refused(f"pid {pid} is the agent itself (or its bridge); refused")
    try:
        p = psutil.Process(pid)
        ct = p.create_time()
        name = p.name()
    except psutil.NoSuchProcess:
        raise Refused(f"pid {pid} is gone") from None
    except psutil.AccessDenied:
        raise Refused(f"pid {pid}: access denied") from None
    if abs(ct - create_time) > CREATE_TIME_SLACK:
        raise Refused(
            f"pid {pid} is another process now (started {ct:.2f}, expected {create_time:.2f}); "
            "the one you chose is gone"
        )
    if name in PROTECTED_NAMES:
        raise Refused(f"pid {pid} ({name}) is protected: the console's own way in")
    return p


def _label(p: psutil.Process) -> str:
    try:
        return f"pid {p.pid} ({p.name()})"
    except psutil.Error:
        return f"pid {p.pid}"


def renice(pid: int, create_time: float, nice: int, *, protected: frozenset[int]) -> Change:
    if not NICE_MIN <= nice <= NICE_MAX:
        raise Refused(f"nice {nice} is out of range: {NICE_MIN} (highest) to {NICE_MAX} (lowest)")
    p = _process(pid, create_time, protected)
    try:
        before = p.nice()
    except psutil.Error as exc:
        raise Refused(f"pid {pid}: cannot read its nice value: {exc}") from None
    if (
        sys.platform != "win32"
        and nice < before
        and os.geteuid() != 0
        and not _may_raise_priority(nice)
    ):
        raise Refused(
            f"raising the priority of pid {pid} (nice {before} -> {nice}) needs root "
            "(or a RLIMIT_NICE that allows it)"
        )
    try:
        p.nice(nice)
    except psutil.NoSuchProcess:
        raise Refused(f"pid {pid} is gone") from None
    except psutil.AccessDenied:
        raise Refused(f"pid {pid}: not allowed to renice (it is not yours?)") from None
    return Change(target=_label(p), before=f"nice {before}", after=f"nice {p.nice()}")


def _may_raise_priority(nice: int) -> bool:
    # RLIMIT_NICE's soft limit is 20 - the lowest nice value the user may set.
    try:
        import resource  # noqa: PLC0415 - Unix only

        soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    except (ImportError, AttributeError, OSError):
        return False
    if soft == resource.RLIM_INFINITY:
        return True
    return nice >= 20 - soft


def cpulist(cores: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``, as taskset and /proc show it."""
    out: list[str] = []
    cs = sorted(set(cores))
    i = 0
    while i < len(cs):
        j = i
        while j + 1 < len(cs) and cs[j + 1] == cs[j] + 1:
            j += 1
        out.append(str(cs[i]) if i == j else f"{cs[i]}-{cs[j]}")
        i = j + 1
    return ",".join(out)


def set_affinity(
    pid: int, create_time: float, cores: list[int], *, protected: frozenset[int]
) -> Change:
    if not hasattr(psutil.Process, "cpu_affinity"):
        raise Refused("this OS does not let processes be pinned to cores")
    n = psutil.cpu_count() or 1
    bad = sorted({c for c in cores if c >= n})
    if bad:
        raise Refused(f"no core {cpulist(bad)} on this host (cores 0-{n - 1})")
    p = _process(pid, create_time, protected)
    try:
        before = p.cpu_affinity()
        p.cpu_affinity(sorted(set(cores)))
        after = p.cpu_affinity()
    except psutil.NoSuchProcess:
        raise Refused(f"pid {pid} is gone") from None
    except psutil.AccessDenied:
        raise Refused(f"pid {pid}: not allowed to change its affinity") from None
    except (ValueError, OSError) as exc:
        raise Refused(f"pid {pid}: cores {cpulist(cores)} refused by the OS: {exc}") from None
    return Change(
        target=_label(p), before=f"cores {cpulist(before)}", after=f"cores {cpulist(after)}"
    )


def send_signal(pid: int, create_time: float, name: str, *, protected: frozenset[int]) -> Change:
    sig_name = name.upper().removeprefix("SIG")
    if sig_name not in SIGNALS:
        raise Refused(f"signal {name!r} is not one of {', '.join(SIGNALS)}")
    sig = getattr(_signal, "SIG" + sig_name, None)
    if sig is None:
        raise Refused(f"signal {sig_name} does not exist on this OS")
    p = _process(pid, create_time, protected)
    try:
        status = p.status()
        p.send_signal(sig)
    except psutil.NoSuchProcess:
        raise Refused(f"pid {pid} is gone") from None
    except psutil.AccessDenied:
        raise Refused(f"pid {pid}: not allowed to signal it (it is not yours?)") from None
    return Change(target=_label(p), before=status, after=f"sent SIG{sig_name}")
