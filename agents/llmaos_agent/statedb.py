"""Opening a SQLite state file that must never silently come back empty.

The agent's request queue and the console's move journal are records people rely on: a
corrupt, truncated or zero-byte file must not be taken for a fresh, empty one (SQLite
would happily treat a zero-byte file as an empty database and create the schema in it,
and the queue or the journal of unfinished moves would be gone without a word).
:func:`open_db` checks the file first (a regular file of ours, never through a symlink;
the SQLite header; ``PRAGMA quick_check``; the tables it must hold) and raises
:class:`Unavailable` with the reason, a copy kept aside and how to recover. The bad file
itself stays where it is, so every later start says the same until someone acts, rather
than the second start finding nothing and beginning afresh.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from llmaos_agent.paths import UnsafeFile, open_file

HEADER = b"SQLite format 3\x00"


class Unavailable(RuntimeError):
    """The state file exists but cannot be trusted; nothing was written to it."""

    def __init__(self, path: Path, why: str, aside: Path | None) -> None:
        self.path, self.why, self.aside = path, why, aside
        kept = f"; a copy is kept as {aside}" if aside else ""
        super().__init__(
            f"{path} is unusable: {why}{kept}. To recover: stop the program, then either "
            f"restore the file from a backup, or salvage it with `sqlite3 {path} .recover`, "
            f"or move it away to start with an empty one"
        )


def problem(path: Path, tables: tuple[str, ...]) -> str | None:
    """Why ``path`` (which exists) is not a usable database with ``tables``, or None."""
    try:
        fd = open_file(path, os.O_RDONLY)
    except UnsafeFile as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot open it: {exc.strerror or exc}"
    try:
        head = os.read(fd, len(HEADER))
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size == 0:
        return "it is empty (zero bytes)"
    if head != HEADER:
        return "it is not a SQLite database (bad header)"
    try:
        # Read-only, so the check itself writes nothing (no WAL replay into a bad file).
        con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=10.0)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
            if [r[0] for r in rows] != ["ok"]:
                return "it is damaged: " + "; ".join(str(r[0]) for r in rows[:3])
            have = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"it is damaged: {exc}"
    missing = [t for t in tables if t not in have]
    if missing:
        return f"it lacks the table {', '.join(missing)}"
    return None


def keep_aside(path: Path) -> Path | None:
    """A copy of the bad file beside it (once: a restart loop must not fill the disk)."""
    aside = path.with_name(path.name + ".bad")
    if aside.exists():
        return aside
    try:
        import shutil  # noqa: PLC0415 - shutil imports bz2 and lzma; only for a bad DB

        shutil.copy2(path, aside, follow_symlinks=False)
        os.chmod(aside, 0o600)
    except OSError:
        return None
    return aside


def open_db(path: Path, tables: tuple[str, ...], *, timeout: float = 10.0,
            check_same_thread: bool = True,
            isolation_level: Literal["DEFERRED", "IMMEDIATE", "EXCLUSIVE"] | None = None,
            ) -> sqlite3.Connection:  # fmt: skip
    """A connection to ``path`` (by default autocommit: the caller opens its transactions),
    created when missing; :class:`Unavailable` when it exists but cannot be trusted."""
    if os.path.lexists(path):
        why = problem(path, tables)
        if why is not None:
            raise Unavailable(path, why, keep_aside(path) if path.is_file() else None)
    else:
        # Born private, and never through a link that appeared in between.
        os.close(open_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    return sqlite3.connect(
        path, isolation_level=isolation_level, timeout=timeout,
        check_same_thread=check_same_thread,
    )  # fmt: skip
