"""A cluster's nodes and their state, from ``sinfo --json`` (structured: no free text can
stand in for a state), or ``scontrol show node`` where sinfo has no ``--json``.

Why not ``scontrol -o show node``: its one line per node holds free-text values with
spaces (``OS=`` comes *before* ``State=`` and is the node's kernel string), so a kernel
string holding `` State=IDLE`` would be read as the node's state. ``scontrol --json``
would do, but Slurm 22.05 (Debian 12's) has none; ``sinfo --json`` (Slurm 21.08 on) dumps
the node records of the same controller answer as scontrol, with the state computed the
same way (a node with one busy CPU of two is ``mixed`` in both: checked against the
fixture; sinfo's *text* summary is the one that can be stale, see
``tests/slurm_cluster.py``).

The text fallback reads scontrol's multi-line form, where each group of fields starts a
line: ``State=`` counts only at the start of a line, and only its first time in a node's
record (``OS=`` has its own line before it; a ``Reason`` on a later line cannot replace
it). Every value must have the shape Slurm gives it (a state is upper-case words joined by
``+``, a name a host name's characters). Names are bounded here; the console cleans them
(``llmaos_agent.safetext.clean``) when drawing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_NODES = 10_000
"""Nodes kept from one answer; a bigger cluster is cut."""
MAX_LINE = 64 * 1024
MAX_NAME = 200
MAX_PARTITIONS = 64
STATE = re.compile(r"[A-Z_]{1,32}[*~#!%$@^-]?(?:\+[A-Z_]{1,32})*\Z")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")
"""A node's name, hostname or partition: a host name's characters (no escape, space, ``=``
or ``,``)."""


@dataclass(frozen=True)
class SlurmNode:
    """One node: ``state`` in sinfo's words (``idle``, ``mixed``, ``allocated``,
    ``drained``, ``draining``, ``down`` ...), ``flags`` the rest of Slurm's state
    (``drain``, ``not_responding`` ...), lower-cased; ``cpus`` its CPUs and ``cpu_load``
    the load average slurmd reports (Slurm's ``CPULoad``; None when unknown);
    ``partitions`` the partitions it is in."""

    name: str
    hostname: str
    state: str
    flags: tuple[str, ...] = ()
    cpus: int = 0
    cpu_load: float | None = None
    partitions: tuple[str, ...] = ()

    @property
    def load_per_cpu(self) -> float | None:
        if self.cpu_load is None or self.cpus <= 0:
            return None
        return self.cpu_load / self.cpus


def node_state(raw: str) -> tuple[str, tuple[str, ...]] | None:
    """(sinfo's word, flags) of scontrol's ``State=`` value; None when it has not the
    shape of one. A draining node is ``drained`` once it runs nothing (idle or down),
    as sinfo says."""
    if not STATE.match(raw):
        return None
    base, *flags = raw.lower().split("+")
    base = base.rstrip("*~#!%$@^-")
    if "drain" in flags:
        return ("drained" if base in ("idle", "down") else "draining"), tuple(flags)
    return base, tuple(flags)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _names(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(v for v in list(values)[:MAX_PARTITIONS] if isinstance(v, str) and NAME.match(v))


def parse_nodes_json(text: str) -> tuple[list[SlurmNode], bool]:
    """The nodes of ``sinfo --json``'s answer, and whether it was cut at
    :data:`MAX_NODES`. A node without a well-formed name and state is skipped; an answer
    that is not sinfo's JSON raises ValueError."""
    data = json.loads(text)
    raw_nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(raw_nodes, list):
        raise ValueError("sinfo --json answered no node list")
    nodes: list[SlurmNode] = []
    for n in raw_nodes:
        if len(nodes) >= MAX_NODES:
            return nodes, True
        if not isinstance(n, dict):
            continue
        name, base, flags = n.get("name"), n.get("state"), n.get("state_flags", [])
        if isinstance(base, list) and base and isinstance(flags, list):
            base, flags = base[0], [*base[1:], *flags]  # later releases: one list of words
        if not isinstance(name, str) or not NAME.match(name) or not isinstance(base, str):
            continue
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            continue
        # The same words as scontrol's State= (IDLE+DRAIN ...), checked the same way.
        state = node_state("+".join([base.upper(), *(f.upper() for f in flags[:32])]))
        if state is None:
            continue
        host = n.get("hostname")
        hostname = host if isinstance(host, str) and NAME.match(host) else name
        cpus = _int(n.get("cpus")) or 0
        load = _int(n.get("cpu_load"))  # hundredths, as slurmd reports it
        parts = n.get("partitions")
        nodes.append(
            SlurmNode(
                name[:MAX_NAME],
                hostname[:MAX_NAME],
                *state,
                cpus=max(cpus, 0),
                cpu_load=None if load is None or load < 0 else load / 100,
                partitions=_names(parts) if isinstance(parts, list) else (),
            )
        )
    if raw_nodes and not nodes:  # a layout of another release: the caller reads the text form
        raise ValueError("sinfo --json: no node of its answer could be read")
    return nodes, False


def _records(text: str) -> list[dict[str, str]]:
    """scontrol's multi-line records: a record starts at a line's first column with
    ``NodeName=``; ``State=`` and ``Partitions=`` count only as a line's first word (each
    starts its own line), the others at their first time (all are printed before OS=)."""
    records: list[dict[str, str]] = []
    for raw in text.splitlines():
        line = raw[:MAX_LINE]
        if line.startswith("NodeName="):
            records.append({})
        if not records:
            continue
        fields = records[-1]
        for i, word in enumerate(line.split()):
            key, eq, value = word.partition("=")
            if not eq or key in fields:
                continue
            first = key in ("NodeName", "State", "Partitions")
            if (first and i == 0) or key in ("NodeHostName", "CPUTot", "CPULoad"):
                fields[key] = value
    return records


def _text_node(fields: dict[str, str]) -> SlurmNode | None:
    name = fields.get("NodeName", "")
    state = node_state(fields.get("State", ""))
    if not NAME.match(name) or state is None:
        return None
    host = fields.get("NodeHostName", "")
    hostname = host if NAME.match(host) else name
    cpus = fields.get("CPUTot", "")
    try:
        load: float | None = float(fields.get("CPULoad", ""))
    except ValueError:
        load = None
    return SlurmNode(
        name[:MAX_NAME],
        hostname[:MAX_NAME],
        *state,
        cpus=int(cpus) if cpus.isdigit() and len(cpus) < 8 else 0,
        cpu_load=load if load is not None and 0 <= load < 1e6 else None,
        partitions=_names(fields.get("Partitions", "").split(",")),
    )


def parse_nodes(text: str) -> tuple[list[SlurmNode], bool]:
    """The nodes of ``scontrol show node``'s multi-line output (the fallback: see the
    module's docstring), and whether it was cut at :data:`MAX_NODES`. A record without a
    well-formed name and state is skipped."""
    nodes: list[SlurmNode] = []
    for fields in _records(text):
        if len(nodes) >= MAX_NODES:
            return nodes, True
        node = _text_node(fields)
        if node is not None:
            nodes.append(node)
    return nodes, False
