"""What the process detail screen shows: one process's figures, plain data.

The app fills a :class:`ProcDetail` from the agent's ``proc.detail`` answer and the
host's history, and hands it to :class:`llmaos_tui.screens.proc_detail.ProcDetailScreen`
(at open and on each new sample). Every text field is the host's, so untrusted: the
screen cleans it when it draws it, never this module. A field the agent could not read
(another user's process, an OS without it) is ``None``, and ``reasons`` says why under
the field's name: "permission denied" shows where the value would.

Free of Textual, Rich and the wire types, so the app (or a test) builds one from
anything: the agent's structs, a recording, literals.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk sleep",
    "T": "stopped",
    "t": "traced",
    "Z": "zombie",
    "I": "idle",
    "X": "dead",
    "W": "paging",
    "K": "wakekill",
    "P": "parked",
}
"""The state letters of Linux's /proc/PID/stat (and ps), in words."""


def state_words(letter: str | None) -> str:
    """``"T"`` -> ``"T stopped"``; an unknown letter as it is (the caller cleans it)."""
    if not letter:
        return "?"
    word = STATES.get(letter[:1])
    return f"{letter[:1]} {word}" if word and len(letter) == 1 else letter


@dataclass(frozen=True)
class GpuUse:
    """One GPU's share of the process: its memory, and NVML's process utilisation
    samples (SM time and memory bandwidth, fractions), as nvitop shows them."""

    index: int
    mem: int | None = None
    """Bytes of GPU memory the process holds; None where the driver does not say."""
    sm: float | None = None
    mem_share: float | None = None
    name: str = ""


@dataclass(frozen=True)
class ProcDetail:
    """One process of one host, as the detail screen draws it.

    ``pid`` and ``create_time`` name the process for the actions (a pid reused by
    another process is refused by the agent). ``cpu_history`` is in fractions of one
    core (the process table's CPU% over 100: 2.5 is two and a half cores busy),
    ``mem_history`` in bytes of RSS, both oldest first, ``None`` where a sample is
    missing."""

    host: str
    pid: int
    create_time: float
    name: str = ""
    cmdline: Sequence[str] | str | None = None
    """The argv (shown quoted as a shell would read it) or one string as the table has it."""
    cwd: str | None = None
    user: str | None = None
    threads: int | None = None
    open_files: int | None = None
    nice: int | None = None
    affinity: str | None = None
    """A core list such as ``0-3,8``."""
    cgroup: str | None = None
    container: str | None = None
    start_time: float | None = None
    """When the process started, epoch seconds (``create_time`` when the agent sends no
    other)."""
    state: str | None = None
    rss: int | None = None
    gpus: Sequence[GpuUse] | None = None
    cpu_history: Sequence[float | None] = ()
    mem_history: Sequence[float | None] = ()
    cores: int = 0
    """The host's logical cores: the affinity prompt's range."""
    reasons: Mapping[str, str] = field(default_factory=dict)
    """Field name -> why it is None ("permission denied", "not on this OS")."""
    gone: str = ""
    """Set when the process has exited (what the agent said): the actions are refused."""

    def reason(self, name: str) -> str:
        return self.reasons.get(name, "")

    @property
    def command(self) -> str | None:
        """The command line as one string (not yet cleaned)."""
        c = self.cmdline
        if c is None:
            return None
        if isinstance(c, str):
            return c
        return shlex.join(c)


def started(start: float | None, now: float | None = None) -> str:
    """``2026-03-01 14:03:12 (2h ago)``: local time and age."""
    if start is None:
        return ""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
    return f"{stamp} ({age(now - start)} ago)"


def age(seconds: float) -> str:
    """An age as ps's etime reads, in words a glance takes: 42s, 7m 5s, 3h 12m, 4d 2h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"
