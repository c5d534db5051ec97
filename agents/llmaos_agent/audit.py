"""The host's audit log: one JSON line per change the agent made, refused or was about to make.

Appended (never rewritten) to ``audit.log`` in the state directory, flushed and fsynced per
line so a crash right after a change still has its record. The file is opened through
:func:`llmaos_agent.paths.open_file` for each line: never through a symlink, only a regular
file of this user that nobody else may write.

A line names who asked: ``operator`` is the authenticated identity (the user name of the
peer uid of the daemon's socket, read with SO_PEERCRED; over SSH that is the login), and
``claimed`` is the name the console gave in its handshake, which nothing checks.

:meth:`AuditLog.check` raises :class:`AuditUnavailable` when a line could not be written
(disk full, read-only or immutable file, a link in its place), and :meth:`AuditLog.append`
when it was not: the daemon checks before each change and does not make it then.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from llmaos_agent.paths import UnsafeFile, open_file

MIN_FREE_BYTES = 64 << 10
"""Less room than this on the audit log's filesystem counts as full: a line is a few
hundred bytes, and a filesystem this close to full may refuse the next block."""


class AuditUnavailable(OSError):
    """The audit log cannot be written; what would have needed the line is not done. An
    OSError, so a caller that handles the log's write errors handles this too."""


def check_room(path: Path) -> None:
    """Raise :class:`AuditUnavailable` unless a line can be appended to ``path`` now: the
    file opens for appending (not immutable, not on a read-only filesystem, no link or
    directory in its place) and its filesystem has room. Called before a change is made,
    so a change whose record cannot be written is not made. The console's log uses it too."""
    fd = _open(path)
    try:
        st = os.fstatvfs(fd) if hasattr(os, "fstatvfs") else None
    except OSError as exc:
        raise AuditUnavailable(f"cannot write the audit log {path}: {_why(exc)}") from exc
    finally:
        os.close(fd)
    if st is not None:
        # root may use the blocks reserved for it; others only what is available.
        free = (st.f_bfree if _getuid() == 0 else st.f_bavail) * st.f_frsize
        if free < MIN_FREE_BYTES or (st.f_files and st.f_favail == 0 and st.f_ffree == 0):
            raise AuditUnavailable(
                f"cannot write the audit log {path}: no space left on its filesystem"
            )


def write_line(path: Path, line: bytes) -> None:
    """Append one whole line to ``path`` and fsync it; :class:`AuditUnavailable` if not."""
    fd = _open(path)
    try:
        # One write of the whole line: O_APPEND keeps lines whole; a short write (the disk
        # filled mid-line) is a failure too, and the torn tail is a bad line readers skip.
        if os.write(fd, line) != len(line):
            raise AuditUnavailable(f"cannot write the audit log {path}: short write")
        os.fsync(fd)
    except AuditUnavailable:
        raise
    except OSError as exc:
        raise AuditUnavailable(f"cannot write the audit log {path}: {_why(exc)}") from exc
    finally:
        os.close(fd)


def _open(path: Path) -> int:
    try:
        return open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except (OSError, UnsafeFile) as exc:
        raise AuditUnavailable(f"cannot open the audit log {path}: {_why(exc)}") from exc


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def check(self) -> None:
        """:func:`check_room` for this log (before a change); the record itself follows
        with the change's result (one line, one fsync, per change)."""
        check_room(self.path)

    def append(
        self,
        *,
        action: str,
        target: str,
        before: str,
        after: str,
        result: str,
        operator: str,
        host: str,
        claimed: str = "",
        uid: int | None = None,
        peer_pid: int | None = None,
    ) -> None:
        entry: dict[str, object] = {
            "time": time.time(),
            "operator": operator,
            "host": host,
            "action": action,
            "target": target,
            "before": before,
            "after": after,
            "result": result,
        }
        if claimed:
            entry["claimed"] = claimed
        if uid is not None:
            entry["uid"] = uid
        if peer_pid is not None:
            entry["peer_pid"] = peer_pid
        write_line(self.path, json.dumps(entry, ensure_ascii=False).encode() + b"\n")


def _getuid() -> int | None:
    return os.getuid() if hasattr(os, "getuid") else None


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
