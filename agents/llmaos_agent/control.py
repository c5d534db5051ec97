"""Process control as htop offers it (renice, affinity, signals), validated before acting.

Every call names its process by pid *and* create time, so a pid that exited and
was reused by another process is refused rather than acted on (on Linux a signal goes
through a pidfd opened before the check, so not even a pid reused in between is hit).
Protected processes (pid 1, this agent and its clients' bridges, sshd) are refused
whatever the caller's rights. A refusal raises :class:`Refused` with a message for the
operator and changes nothing. The OS is reached through :mod:`llmaos_agent.system`: the
standard library on Linux, psutil elsewhere.
"""

from __future__ import annotations

import os
import signal as _signal
import sys

from llmaos_agent.protocol import Change
from llmaos_agent.system import (
    IDENTITY_SLACK,
    SIGNALS,
    Denied,
    Gone,
    HostOS,
    Target,
    host_os,
)

__all__ = ["SIGNALS", "Refused", "cpulist", "renice", "send_signal", "set_affinity"]

NICE_MIN, NICE_MAX = -20, 19
CREATE_TIME_SLACK = IDENTITY_SLACK
"""Seconds two readings of one process's create time may differ (rounding on the wire)."""

PROTECTED_NAMES = frozenset({"sshd", "sshd-session", "sshd-auth", "init", "systemd"})


class Refused(Exception):
    """A change the agent will not make; nothing was changed."""


def _process(hos: HostOS, pid: int, create_time: float, protected: frozenset[int]) -> Target:
    if pid <= 1:
        raise Refused(f"pid {pid} is protected (the system's init)")
    if pid in protected:
        raise Refused(f"pid {pid} is the agent itself (or its bridge); refused")
    try:
        t = hos.lookup(pid, create_time)
    except Gone:
        raise Refused(f"pid {pid} is gone") from None
    except Denied:
        raise Refused(f"pid {pid}: access denied") from None
    except ValueError as exc:
        raise Refused(
            f"pid {pid} is another process now ({exc}); the one you chose is gone"
        ) from None
    if t.name in PROTECTED_NAMES:
        raise Refused(f"pid {pid} ({t.name}) is protected: the console's own way in")
    return t


def _label(t: Target) -> str:
    return f"pid {t.pid} ({t.name})" if t.name else f"pid {t.pid}"


def renice(pid: int, create_time: float, nice: int, *, protected: frozenset[int]) -> Change:
    if not NICE_MIN <= nice <= NICE_MAX:
        raise Refused(f"nice {nice} is out of range: {NICE_MIN} (highest) to {NICE_MAX} (lowest)")
    hos = host_os()
    t = _process(hos, pid, create_time, protected)
    try:
        before = hos.nice(pid)
    except (Gone, Denied) as exc:
        raise Refused(f"pid {pid}: cannot read its nice value: {exc}") from None
    if nice < before and not _may_raise_priority(nice):
        raise Refused(
            f"raising the priority of pid {pid} (nice {before} -> {nice}) needs root "
            "(or a RLIMIT_NICE that allows it)"
        )
    try:
        hos.set_nice(pid, nice)
        after = hos.nice(pid)
    except Gone:
        raise Refused(f"pid {pid} is gone") from None
    except Denied:
        raise Refused(f"pid {pid}: not allowed to renice (it is not yours?)") from None
    return Change(target=_label(t), before=f"nice {before}", after=f"nice {after}")


def _may_raise_priority(nice: int) -> bool:
    if sys.platform == "win32":
        return True  # the OS says no itself, and Denied tells the operator
    if os.geteuid() == 0:
        return True
    # RLIMIT_NICE's soft limit is 20 - the lowest nice value the user may set.
    if sys.platform != "linux":
        return False  # no RLIMIT_NICE off Linux
    import resource  # noqa: PLC0415 - Unix only

    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    except (AttributeError, OSError):
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
    hos = host_os()
    if not hos.features.affinity:
        raise Refused("this OS does not let processes be pinned to cores")
    n = hos.cpu_count()
    bad = sorted({c for c in cores if c >= n})
    if bad:
        raise Refused(f"no core {cpulist(bad)} on this host (cores 0-{n - 1})")
    t = _process(hos, pid, create_time, protected)
    try:
        before = hos.affinity(pid)
        hos.set_affinity(pid, sorted(set(cores)))
        after = hos.affinity(pid)
    except Gone:
        raise Refused(f"pid {pid} is gone") from None
    except Denied:
        raise Refused(f"pid {pid}: not allowed to change its affinity") from None
    except (ValueError, OSError) as exc:
        raise Refused(f"pid {pid}: cores {cpulist(cores)} refused by the OS: {exc}") from None
    return Change(
        target=_label(t), before=f"cores {cpulist(before)}", after=f"cores {cpulist(after)}"
    )


def send_signal(pid: int, create_time: float, name: str, *, protected: frozenset[int]) -> Change:
    sig_name = name.upper().removeprefix("SIG")
    if sig_name not in SIGNALS:
        raise Refused(f"signal {name!r} is not one of {', '.join(SIGNALS)}")
    hos = host_os()
    if sig_name not in hos.features.signals or (
        sig_name not in ("TERM", "KILL") and getattr(_signal, "SIG" + sig_name, None) is None
    ):
        raise Refused(f"signal {sig_name} does not exist on this OS")
    t = _process(hos, pid, create_time, protected)
    try:
        status = hos.status(pid)
        hos.send_signal(t, sig_name)
    except Gone:
        raise Refused(f"pid {pid} is gone") from None
    except Denied:
        raise Refused(f"pid {pid}: not allowed to signal it (it is not yours?)") from None
    return Change(target=_label(t), before=status, after=f"sent SIG{sig_name}")
