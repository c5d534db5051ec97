"""The process table as changes: :func:`diff` and :func:`full` on the agent's side,
:func:`apply` on the console's.

Pure and light on purpose (the protocol's Structs and nothing else): the console applies
every sample's delta with :func:`apply`, and importing the collector that makes the
table (``collect/processes.py``) would load psutil into a console that never reads a
process itself. ``collect.processes`` re-exports all three for its callers.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmaos_agent.protocol import Proc, ProcDelta

__all__ = ["apply", "diff", "full"]


def diff(old: Mapping[int, Proc], new: Mapping[int, Proc]) -> ProcDelta:
    """The changes that turn ``old`` into ``new``."""
    # `is` first: the fast path keeps the same object for a process that did not change.
    upsert = [p for pid, p in new.items() if (o := old.get(pid)) is not p and o != p]
    gone = [pid for pid in old if pid not in new]
    return ProcDelta(full=False, upsert=upsert, gone=gone)


def full(table: Mapping[int, Proc]) -> ProcDelta:
    """The whole table, as a delta that replaces whatever the other side holds."""
    return ProcDelta(full=True, upsert=list(table.values()), gone=[])


def apply(table: dict[int, Proc], delta: ProcDelta) -> None:
    """Apply a delta in place (the console side of :func:`diff`)."""
    if delta.full:
        table.clear()
    for pid in delta.gone:
        table.pop(pid, None)
    for p in delta.upsert:
        table[p.pid] = p
