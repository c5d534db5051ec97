"""The move journal: what a multi-step operation is doing, on disk before it is done.

One SQLite database (WAL, ``synchronous=FULL``: a row the journal returned from writing
survives a crash of the console or the machine) in the console's state directory, holding
one append-only table. An operation writes:

- ``begin`` with its plan (everything needed to undo or finish it without asking anyone);
- ``step`` before each step runs, and ``done`` after it, with what it made (ids, names);
- ``end`` with the outcome, once it has reached one of its two ends.

Each ``begin`` records the journal's format (``FORMAT_KEY`` in its plan): entries of this
format and of the one before it (unversioned, format 1) are read and recovered alike; an
entry written by a newer console (a format this one does not know) is read but marked
:attr:`MoveRecord.unreadable`, with a message saying so, and left for that console: never
guessed at, never a crash.

Rows are never updated or deleted, so the journal is also the history of every move. An
operation with a ``begin`` and no ``end`` is unfinished: a console that starts again reads
those (:meth:`MoveJournal.unfinished`) and finishes them, forward or back.

An operation in progress is held by its process with an ``flock`` on a file beside the
database (``<db>.locks/<id>``): another console running at the same time leaves it alone
(it is not unfinished, only busy), and a console that died lets go of it with its life.

A journal file that exists but is corrupt, truncated or empty is never taken for an empty
journal (that would forget the unfinished moves): :class:`JournalUnavailable` says why,
where a copy is kept and how to recover. Move ids become lock file names only through
:func:`llmaos_agent.paths.inside`, and the directories are made without following links.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import platformdirs

from llmaos_agent.paths import UnsafeDirectory, inside, open_file, private_dir
from llmaos_agent.statedb import Unavailable, open_db

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process hold on a move
    fcntl = None  # type: ignore[assignment]

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    move_id TEXT NOT NULL,
    t       REAL NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('begin', 'step', 'done', 'end')),
    step    TEXT NOT NULL DEFAULT '',
    data    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS entries_move ON entries (move_id, seq);
"""


FORMAT = 2
"""The format of the entries this version writes. 1: unversioned (before issue 15); 2: the
same rows, with ``FORMAT_KEY`` in each ``begin``'s plan."""
FORMAT_KEY = "journal_format"
READABLE = (1, 2)  # the formats this version recovers

JournalUnavailable = Unavailable
"""The journal file exists but cannot be trusted; the message says why and how to recover."""
OPEN_ERRORS = (JournalUnavailable, UnsafeDirectory, OSError, sqlite3.Error)
"""What opening the journal raises when it cannot be had (a damaged file, a directory that
is not ours, no room, a locked database): each says why in its message."""


def default_journal_path() -> Path:
    """``moves.sqlite`` in the console's state directory (platformdirs)."""
    return Path(platformdirs.user_state_dir("llmaos-tui", appauthor=False)) / "moves.sqlite"


@dataclass
class StepRecord:
    """One step of a move as the journal has it: started, and perhaps done."""

    name: str
    started: float
    data: dict[str, Any] = field(default_factory=dict)  # written with the step
    done: float | None = None
    result: dict[str, Any] = field(default_factory=dict)  # written when done


@dataclass
class MoveRecord:
    """A move read back from the journal."""

    move_id: str
    began: float
    plan: dict[str, Any]
    steps: list[StepRecord]
    ended: float | None = None
    outcome: dict[str, Any] | None = None
    format: int = FORMAT  # the format it was written in (1: unversioned)
    unreadable: str | None = None  # why this version cannot act on it (a newer format)

    def step(self, name: str) -> StepRecord | None:
        """The latest record of step ``name`` (steps of a recovery may repeat a name)."""
        for s in reversed(self.steps):
            if s.name == name:
                return s
        return None

    def started(self, name: str) -> bool:
        return self.step(name) is not None

    def finished(self, name: str) -> bool:
        s = self.step(name)
        return s is not None and s.done is not None

    def made(self, key: str) -> list[Any]:
        """Every value recorded under ``key`` by a step, started or done, in order."""
        out: list[Any] = []
        for s in self.steps:
            for d in (s.data, s.result):
                if key in d:
                    out.append(d[key])
        return out


class MoveJournal:
    """The journal at ``path`` (default: :func:`default_journal_path`). One per console
    process; several processes may share the file (SQLite locks it)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_journal_path()
        private_dir(self.path.parent)
        # check_same_thread off: a move runs in a worker thread, the console reads from another;
        # every write is one short transaction under SQLite's own lock.
        self._db = open_db(
            self.path, ("entries",), timeout=30, check_same_thread=False, isolation_level="DEFERRED"
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._db.commit()
        self._locks_dir = self.path.with_name(self.path.name + ".locks")
        self._held: dict[str, IO[str]] = {}

    def close(self) -> None:
        for move_id in list(self._held):
            self.release(move_id)
        self._db.close()

    # -- who is working on a move ---------------------------------------------------------

    def claim(self, move_id: str) -> bool:
        """Hold ``move_id`` for this journal object; False when another holds it."""
        if move_id in self._held:
            return True
        if fcntl is None:
            return True
        private_dir(self._locks_dir)
        fd = open_file(inside(self._locks_dir, move_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        f = os.fdopen(fd, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._held[move_id] = f
        return True

    def release(self, move_id: str) -> None:
        f = self._held.pop(move_id, None)
        if f is not None:
            with contextlib.suppress(OSError):
                os.unlink(inside(self._locks_dir, move_id))
            f.close()

    def busy(self, move_id: str) -> bool:
        """Whether another process (or journal object) holds ``move_id`` now."""
        if move_id in self._held:
            return False
        if not self.claim(move_id):
            return True
        f = self._held.pop(move_id)
        f.close()  # a probe: let go, leave the file for its next holder
        return False

    def __enter__(self) -> MoveJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, move_id: str, kind: str, step: str, data: dict[str, Any]) -> None:
        with self._db:  # one transaction, committed (and synced) before returning
            self._db.execute(
                "INSERT INTO entries (move_id, t, kind, step, data) VALUES (?, ?, ?, ?, ?)",
                (move_id, time.time(), kind, step, json.dumps(data, default=str)),
            )

    def begin(self, plan: dict[str, Any], move_id: str | None = None) -> str:
        """Record a new operation and its plan; return its id."""
        move_id = move_id or uuid.uuid4().hex
        self.claim(move_id)  # held before it exists, so no recovery can take it meanwhile
        self._write(move_id, "begin", "", {**plan, FORMAT_KEY: FORMAT})
        return move_id

    def step(self, move_id: str, name: str, **data: Any) -> None:
        """Record that step ``name`` is about to run (and what it is about to make)."""
        self._write(move_id, "step", name, data)

    def done(self, move_id: str, name: str, **result: Any) -> None:
        """Record that step ``name`` finished (and what it made)."""
        self._write(move_id, "done", name, result)

    def end(self, move_id: str, outcome: str, **data: Any) -> None:
        """Record the operation's end: ``outcome`` is "moved", "rolled_back", "refused"..."""
        self._write(move_id, "end", "", {"outcome": outcome, **data})
        self.release(move_id)

    def get(self, move_id: str) -> MoveRecord:
        rows = self._db.execute(
            "SELECT t, kind, step, data FROM entries WHERE move_id = ? ORDER BY seq", (move_id,)
        ).fetchall()
        if not rows or rows[0][1] != "begin":
            raise KeyError(move_id)
        plan, fmt, unreadable = _read_plan(move_id, rows[0][3])
        rec = MoveRecord(
            move_id=move_id,
            began=rows[0][0],
            plan=plan,
            steps=[],
            format=fmt,
            unreadable=unreadable,
        )
        for t, kind, step, data in rows[1:]:
            values = json.loads(data)
            if kind == "step":
                rec.steps.append(StepRecord(step, t, values))
            elif kind == "done":
                s = rec.step(step)
                if s is not None:
                    s.done, s.result = t, values
            elif kind == "end":
                rec.ended, rec.outcome = t, values
        return rec

    def unfinished(self, *, include_busy: bool = False) -> list[MoveRecord]:
        """Operations begun and not ended, oldest first; those another console is running
        now are left out unless ``include_busy``."""
        rows = self._db.execute(
            "SELECT move_id FROM entries WHERE kind = 'begin' AND move_id NOT IN "
            "(SELECT move_id FROM entries WHERE kind = 'end') ORDER BY seq"
        ).fetchall()
        return [self.get(r[0]) for r in rows if include_busy or not self.busy(r[0])]

    def recent(self, limit: int = 50) -> list[MoveRecord]:
        """The latest operations, newest first (the console's history view)."""
        rows = self._db.execute(
            "SELECT move_id FROM entries WHERE kind = 'begin' ORDER BY seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [self.get(r[0]) for r in rows]


def _read_plan(move_id: str, data: str) -> tuple[dict[str, Any], int, str | None]:
    """A ``begin`` row's plan, its format, and why it cannot be acted on (or None)."""
    try:
        plan = json.loads(data)
    except ValueError as exc:
        return {}, 0, f"move {move_id}: its plan in the journal is not JSON ({exc})"
    if not isinstance(plan, dict):
        return {}, 0, f"move {move_id}: its plan in the journal is not an object"
    raw = plan.pop(FORMAT_KEY, 1)
    fmt = raw if isinstance(raw, int) and not isinstance(raw, bool) else 0
    if fmt not in READABLE:
        return (
            plan,
            fmt,
            f"move {move_id} was journaled in format {raw!r}, which this version "
            f"(formats {READABLE[0]}-{READABLE[-1]}) does not know: finish it with the newer "
            "console that began it; nothing was done to it",
        )
    return plan, fmt, None
