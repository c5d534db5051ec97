"""A cluster's nodes and their state, parsed from ``scontrol -o show node``.

scontrol (not sinfo: sinfo 22.05 can report a node's state stale, see
``tests/slurm_cluster.py``) prints one line per node of ``Key=value`` words; a few values
are free text with spaces (``OS=``, ``Reason=``, ``Comment=``). The first ``NodeName=``,
``NodeHostName=`` and ``State=`` of a line count, and each must have the shape Slurm gives
it (a state is upper-case words joined by ``+``, a name a host name's characters), so a
``Reason`` that says ``State=IDLE`` after the real one changes nothing. Names are bounded
here; the console cleans them (``llmaos_agent.safetext.clean``) when drawing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NODES = 10_000
"""Lines kept from one answer; a bigger cluster is cut."""
MAX_LINE = 64 * 1024
MAX_NAME = 200
STATE = re.compile(r"[A-Z_]{1,32}[*~#!%$@^-]?(?:\+[A-Z_]{1,32})*\Z")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\Z")
"""A node's name or hostname: a host name's characters (no escape, space or ``=``)."""


@dataclass(frozen=True)
class SlurmNode:
    """One node: ``state`` in sinfo's words (``idle``, ``mixed``, ``allocated``,
    ``drained``, ``draining``, ``down`` ...), ``flags`` the rest of Slurm's state
    (``drain``, ``not_responding`` ...), lower-cased."""

    name: str
    hostname: str
    state: str
    flags: tuple[str, ...] = ()


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


def parse_nodes(text: str) -> tuple[list[SlurmNode], bool]:
    """The nodes of ``scontrol -o show node``'s output, and whether it was cut at
    :data:`MAX_NODES`. A line without a well-formed name and state is skipped."""
    nodes: list[SlurmNode] = []
    for line in text.splitlines():
        if len(nodes) >= MAX_NODES:
            return nodes, True
        fields: dict[str, str] = {}
        for word in line[:MAX_LINE].split():
            key, eq, value = word.partition("=")
            if eq and key in ("NodeName", "NodeHostName", "State") and key not in fields:
                fields[key] = value
        name = fields.get("NodeName", "")
        state = node_state(fields.get("State", ""))
        if not NAME.match(name) or state is None:
            continue
        host = fields.get("NodeHostName", "")
        hostname = host if NAME.match(host) else name
        nodes.append(SlurmNode(name[:MAX_NAME], hostname[:MAX_NAME], *state))
    return nodes, False
