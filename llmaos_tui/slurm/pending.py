"""Pending Slurm jobs with their node constraints, as a balancing plan needs them.

Read with ``squeue -h -t PENDING -o FORMAT``; the format starts every row with a random
marker (as :mod:`.jobs` does) and holds no free text (no job name): id, user, partition,
``ReqNodeList`` (``%n``) and ``ExcNodeList`` (``%x``). Node lists are Slurm's hostlist
expressions (``gpu[01-03,07],login1``), expanded here with a bound
(:func:`expand_hostlist`); a list that does not parse or is too long is kept as
unparsed (``None``), and the plan leaves that job alone.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from llmaos_tui.slurm.jobs import JOB_ID, MAX_JOBS, MAX_USER
from llmaos_tui.slurm.nodes import NAME

MAX_EXPANDED = 4096
"""Node names one hostlist may expand to; a longer one is left unparsed."""
_RANGE = re.compile(r"([0-9]{1,9})(?:-([0-9]{1,9}))?\Z")
_FIELDS = ("id", "user", "state", "partition", "required", "excluded", "nodes")
_CODES = "%i|%u|%T|%P|%n|%x|%D"


@dataclass(frozen=True)
class PendingJob:
    """A pending job: ``partitions`` (comma-separated in Slurm, several allowed),
    ``required`` and ``excluded`` node names (empty: none; None: Slurm's list did not
    parse)."""

    job_id: str
    user: str
    partitions: tuple[str, ...]
    required: frozenset[str] | None
    excluded: frozenset[str] | None
    nodes: int = 1
    """How many nodes it asks for (squeue's ``%D``: its minimum while pending)."""


_ITEM = re.compile(r"([^,\[\]]*)(?:\[([^\]]*)\]([^,\[\]]*))?(?:,|\Z)")
"""One item of a hostlist: a prefix, and a bracketed range list with its suffix."""


def _item(prefix: str, ranges: str | None, suffix: str, names: set[str]) -> bool:
    if ranges is None:
        names.add(prefix)
        return True
    for part in ranges.split(","):
        m = _RANGE.match(part)
        if m is None:
            return False
        lo, hi = m.group(1), m.group(2) or m.group(1)
        if int(hi) < int(lo) or len(names) + int(hi) - int(lo) >= MAX_EXPANDED:
            return False
        names.update(f"{prefix}{n:0{len(lo)}d}{suffix}" for n in range(int(lo), int(hi) + 1))
    return True


def expand_hostlist(text: str) -> frozenset[str] | None:
    """The names of a hostlist expression (``a[1-3,5],b``; ``(null)``/empty: none); None
    when it does not parse or expands past :data:`MAX_EXPANDED`."""
    text = text.strip()
    if text in ("", "(null)", "N/A"):
        return frozenset()
    names: set[str] = set()
    at = 0
    while at < len(text):
        m = _ITEM.match(text, at)
        if m is None or m.end() == at or not _item(m[1], m[2], m[3] or "", names):
            return None
        at = m.end()
    if not names or not all(NAME.match(n) for n in names):
        return None
    return frozenset(names)


def pending_format() -> tuple[str, str]:
    """(the marker, squeue's ``-o`` format) for one call."""
    mark = f"@{secrets.token_hex(8)}@"
    return mark, f"{mark}|{_CODES}"


def parse_pending(text: str, mark: str) -> list[PendingJob]:
    """The pending jobs in squeue's output made with :func:`pending_format`'s ``mark``;
    rows that do not parse are skipped, at most :data:`~.jobs.MAX_JOBS`."""
    out: list[PendingJob] = []
    head = mark + "|"
    for line in text.split("\n"):
        if not line.startswith(head) or len(out) >= MAX_JOBS:
            continue
        row = line[len(head) :].split("|")
        if len(row) != len(_FIELDS):
            continue
        f = dict(zip(_FIELDS, row, strict=True))
        if not JOB_ID.match(f["id"]) or f["state"] != "PENDING":
            continue
        parts = tuple(p for p in f["partition"].split(",") if NAME.match(p))
        out.append(
            PendingJob(
                job_id=f["id"],
                user=f["user"][:MAX_USER],
                partitions=parts,
                required=expand_hostlist(f["required"]),
                excluded=expand_hostlist(f["excluded"]),
                nodes=int(f["nodes"]) if f["nodes"].isdigit() and len(f["nodes"]) < 7 else 1,
            )
        )
    return out
