"""The console's audit log: one JSON line per change the console made, appended, never edited.

Each line holds ``time`` (UTC, ISO 8601), ``operator`` (the local user at this console),
``host``, ``target``, ``action``, ``before``, ``after`` and ``result``, and ``identity``
where the caller knows it: the SSH login this console used for that host, which is what
the host's agent records as the authenticated operator (``identity_for`` gives it per host;
:func:`identity_of` reads it from the console's links). Any operation appends through
:class:`AuditLog`: a container move, a renice, a request's new priority. A line is one
``write`` on a file opened ``O_APPEND`` and then fsynced, so two consoles writing at once
never interleave inside a line and a line the log shows is on disk.

It fails closed: :meth:`AuditLog.check` raises :class:`AuditUnavailable` when a line could
not be written now (a read-only or immutable file, a link or directory in its place, a full
filesystem) and :meth:`AuditLog.append` when one was not; a step is not started then. The
file is opened without following a symlink and only as a regular file of this user.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import platformdirs

from llmaos_agent.audit import AuditUnavailable, check_room, write_line
from llmaos_agent.paths import UnsafeDirectory, private_dir
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.local import local_user

__all__ = ["AuditLog", "AuditUnavailable", "default_audit_path", "identity_of"]
"""AuditUnavailable is the host's kind: one check and one write path serve both logs."""


def default_audit_path() -> Path:
    """``audit.jsonl`` in the console's state directory (platformdirs)."""
    return Path(platformdirs.user_state_dir("llmaos-tui", appauthor=False)) / "audit.jsonl"


def _operator() -> str:
    return local_user()


def identity_of(links: Mapping[str, Link]) -> Callable[[str], str | None]:
    """``identity_for`` over a console's links: the login each host's agent knows it by."""
    return lambda host: links[host].login if host in links else None


class AuditLog:
    """Append-only JSONL at ``path`` (default: :func:`default_audit_path`).

    ``identity_for(host)``: the SSH login used for ``host`` (None where unknown), recorded
    as ``identity`` on every line for that host that does not give one itself.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        identity_for: Callable[[str], str | None] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_audit_path()
        self.identity_for = identity_for

    def check(self) -> None:
        """Raise :class:`AuditUnavailable` unless a line can be appended now: before a
        step that must be audited is started (the same check as the host's log)."""
        self._dir()
        check_room(self.path)

    def append(
        self,
        *,
        action: str,
        host: str,
        target: str,
        before: Any = None,
        after: Any = None,
        result: str,
        operator: str | None = None,
        identity: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Write one line and return it as a dict. ``before``/``after`` are any JSON-able
        values (what the target was and became); ``result`` is "ok", "refused: ...",
        "failed: ...", or the like; ``extra`` keys are kept after the standard ones.
        Raises :class:`AuditUnavailable` when the line cannot be written."""
        if identity is None and self.identity_for is not None:
            try:
                identity = self.identity_for(host)
            except Exception:  # noqa: BLE001 - a lookup that fails must not lose the line
                identity = None
        entry: dict[str, Any] = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "operator": operator or _operator(),
            "host": host,
            "target": target,
            "action": action,
            "before": before,
            "after": after,
            "result": result,
        }
        if identity:
            entry["identity"] = identity
        entry.update(extra)
        self._dir()
        write_line(self.path, (json.dumps(entry, default=str, ensure_ascii=False) + "\n").encode())
        return entry

    def _dir(self) -> None:
        try:
            private_dir(self.path.parent)
        except (OSError, UnsafeDirectory) as exc:
            raise AuditUnavailable(f"cannot open the audit log {self.path}: {_why(exc)}") from exc

    def read(self) -> list[dict[str, Any]]:
        """Every entry, oldest first; a torn last line (a crash mid-write) is skipped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for line in text.splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
