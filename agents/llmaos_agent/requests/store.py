"""The request queue on disk: one SQLite database (WAL) in the user's state directory.

Every change is one transaction committed before the caller is answered, with
``synchronous=FULL``, so what a client was told is on disk even across a power
cut. Lists of cores, GPUs and argv are stored as JSON text. A file that exists but is
corrupt, truncated or empty raises :class:`StoreUnavailable` (see
:mod:`llmaos_agent.statedb`): the daemon then runs without a queue and says why, rather
than starting an empty queue over the requests it had.
"""

# ruff: noqa: S608 - the SQL is built from the fixed column list and "?" marks only;
# every value goes in as a bound parameter.
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from llmaos_agent.statedb import Unavailable, open_db

StoreUnavailable = Unavailable
"""The queue's database exists but cannot be trusted (the message says why and how to
recover); nothing was written to it."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    argv TEXT NOT NULL,
    shell INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    cpus INTEGER NOT NULL,
    gpus INTEGER NOT NULL,
    share_gpu INTEGER NOT NULL,
    mem INTEGER NOT NULL,
    cwd TEXT,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    submitted REAL NOT NULL,
    started REAL,
    ended REAL,
    exit_code INTEGER,
    pid INTEGER,
    pid_ct REAL,
    sup_pid INTEGER,
    sup_ct REAL,
    cores TEXT NOT NULL,
    gpu_uuids TEXT NOT NULL,
    nice INTEGER,
    reason TEXT NOT NULL,
    cancel_at REAL,
    attempt INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state);
"""

ACTIVE = ("queued", "held", "starting", "running")
"""``starting``: committed before the supervisor is started, so a daemon killed at any
point of a dispatch finds the request there and settles it (see queue.RequestQueue._start);
the wire shows it as running."""


@dataclass(frozen=True)
class Row:
    id: str
    seq: int
    name: str
    argv: list[str]
    shell: bool
    priority: int
    cpus: int
    gpus: int
    share_gpu: bool
    mem: int
    cwd: str | None
    owner: str
    state: str
    submitted: float
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    pid: int | None = None
    pid_ct: float | None = None
    sup_pid: int | None = None
    sup_ct: float | None = None
    cores: list[int] = field(default_factory=list)
    gpu_uuids: list[str] = field(default_factory=list)
    nice: int | None = None
    reason: str = ""
    cancel_at: float | None = None
    attempt: int = 0  # dispatches so far; a supervisor runs only the attempt it was started for

    def with_(self, **changes: Any) -> Row:
        return replace(self, **changes)


_COLUMNS = [f.name for f in fields(Row)]
_JSON = {"argv", "cores", "gpu_uuids"}
_BOOL = {"shell", "share_gpu"}


def _to_db(row: Row) -> list[Any]:
    out: list[Any] = []
    for c in _COLUMNS:
        v = getattr(row, c)
        out.append(json.dumps(v) if c in _JSON else int(v) if c in _BOOL else v)
    return out


def _from_db(values: Iterable[Any]) -> Row:
    kw: dict[str, Any] = {}
    for c, v in zip(_COLUMNS, values, strict=True):
        kw[c] = json.loads(v) if c in _JSON else bool(v) if c in _BOOL else v
    return Row(**kw)


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        # isolation_level=None: we open transactions ourselves (BEGIN IMMEDIATE), so a
        # second daemon or tool on the same file waits instead of failing mid-write.
        self.db = open_db(path, ("requests",))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(requests)")}
        if "attempt" not in cols:  # a queue from before exactly-once dispatch
            self.db.execute("ALTER TABLE requests ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def next_seq(self) -> int:
        (v,) = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM requests").fetchone()
        return int(v)

    def min_seq(self) -> int:
        (v,) = self.db.execute("SELECT COALESCE(MIN(seq), 1) FROM requests").fetchone()
        return int(v)

    def insert(self, row: Row) -> None:
        marks = ",".join("?" * len(_COLUMNS))
        self.db.execute(
            f"INSERT INTO requests ({','.join(_COLUMNS)}) VALUES ({marks})", _to_db(row)
        )

    def update(self, row: Row) -> None:
        sets = ",".join(f"{c}=?" for c in _COLUMNS[1:])
        self.db.execute(f"UPDATE requests SET {sets} WHERE id=?", [*_to_db(row)[1:], row.id])

    def delete(self, rid: str) -> None:
        self.db.execute("DELETE FROM requests WHERE id=?", (rid,))

    def get(self, rid: str) -> Row | None:
        cur = self.db.execute(f"SELECT {','.join(_COLUMNS)} FROM requests WHERE id=?", (rid,))
        v = cur.fetchone()
        return None if v is None else _from_db(v)

    def active(self) -> list[Row]:
        marks = ",".join("?" * len(ACTIVE))
        cur = self.db.execute(
            f"SELECT {','.join(_COLUMNS)} FROM requests WHERE state IN ({marks}) ORDER BY seq",
            ACTIVE,
        )
        return [_from_db(v) for v in cur]

    def by_state(self, *states: str) -> list[Row]:
        marks = ",".join("?" * len(states))
        cur = self.db.execute(
            f"SELECT {','.join(_COLUMNS)} FROM requests WHERE state IN ({marks}) ORDER BY seq",
            states,
        )
        return [_from_db(v) for v in cur]

    def query(self, states: list[str], limit: int) -> tuple[list[Row], int]:
        where, args = "", list(states)
        if states:
            where = f"WHERE state IN ({','.join('?' * len(states))})"
        (total,) = self.db.execute(f"SELECT COUNT(*) FROM requests {where}", args).fetchone()
        cur = self.db.execute(
            f"SELECT {','.join(_COLUMNS)} FROM requests {where} "
            "ORDER BY (state IN ('queued','held','starting','running')) DESC, seq DESC LIMIT ?",
            [*args, limit],
        )
        return [_from_db(v) for v in cur], int(total)

    def recent_finished(self, limit: int) -> list[Row]:
        cur = self.db.execute(
            f"SELECT {','.join(_COLUMNS)} FROM requests WHERE state NOT IN (?,?,?,?) "
            "ORDER BY ended DESC LIMIT ?",
            [*ACTIVE, limit],
        )
        return [_from_db(v) for v in cur]
