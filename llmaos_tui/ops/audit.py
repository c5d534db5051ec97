"""The console's audit log: one JSON line per change the console made, appended, never edited.

Each line holds ``time`` (UTC, ISO 8601), ``operator``, ``host``, ``target``, ``action``,
``before``, ``after`` and ``result``. Any operation appends through :class:`AuditLog`: a
container move, a renice, a request's new priority. A line is one ``write`` on a file opened
``O_APPEND`` and then fsynced, so two consoles writing at once never interleave inside a
line and a line the log shows is on disk.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from pathlib import Path
from typing import Any

import platformdirs


def default_audit_path() -> Path:
    """``audit.jsonl`` in the console's state directory (platformdirs)."""
    return Path(platformdirs.user_state_dir("llmaos-tui", appauthor=False)) / "audit.jsonl"


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "?"


class AuditLog:
    """Append-only JSONL at ``path`` (default: :func:`default_audit_path`)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_audit_path()

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
        **extra: Any,
    ) -> dict[str, Any]:
        """Write one line and return it as a dict. ``before``/``after`` are any JSON-able
        values (what the target was and became); ``result`` is "ok", "refused: ...",
        "failed: ...", or the like; ``extra`` keys are kept after the standard ones."""
        entry: dict[str, Any] = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "operator": operator or _operator(),
            "host": host,
            "target": target,
            "action": action,
            "before": before,
            "after": after,
            "result": result,
            **extra,
        }
        line = (json.dumps(entry, default=str, ensure_ascii=False) + "\n").encode()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

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
