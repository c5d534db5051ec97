"""Which request or container each GPU process of a host belongs to (issue 16).

Pure: from what the console already holds for a host (its last sample's GPU processes, its
process table, its request list and its containers) to one owner label per GPU process:
``req:ID`` for a process of a running request of the agent's queue, ``ctr:NAME`` for one
of a container of the host's engine, nothing for the rest. No call to the host: the GPU
panel redraws from it at 1 Hz.

How a process is placed:

- a request: the agent records each running request's pid (``RequestInfo.pid``, the leader
  of the request's own process group, started by its supervisor); a GPU process is the
  request's when it is that pid or descends from it (the table's ``ppid`` chain: a
  launcher's workers, ``torchrun``'s ranks);
- a container: the authoritative word is the process's cgroup, which ``proc.detail``
  answers (``ProcDetail.container``); a caller that holds such answers passes them as
  ``cgroups``. Without one, the table tells it too: every process of a Docker container
  descends from the engine's ``containerd-shim*`` for it, a root process whose command
  line names the container (``-id <64 hex>``). Only a shim of root, naming a container the
  engine lists, counts: any user may name a process of theirs ``containerd-shim`` with a
  forged ``-id``, but not run it as root, and an unlisted id names nothing.

Without the process table (a host whose processes are off, ``procs.watch``) only a GPU
process that is itself a request's leader, or one in ``cgroups``, is placed.

Labels are host text (a container's name is its creator's): cleaned of control and format
characters (:func:`llmaos_agent.safetext.clean`) and cut to :data:`LABEL_MAX` characters,
ready to draw.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from llmaos_agent.protocol import Container, GpuSample, Proc, RequestInfo
from llmaos_agent.safetext import clean

if TYPE_CHECKING:
    from llmaos_tui.fleet.state import HostState

__all__ = ["LABEL_MAX", "MAX_DEPTH", "gpu_owners", "host_gpu_owners", "shim_container"]

LABEL_MAX: Final = 40
"""Longest label, in characters ("ctr:" and the name; a longer name ends in an ellipsis)."""
MAX_DEPTH: Final = 64
"""Ancestors walked from a GPU process at most (a table with a ppid loop ends too)."""
_SHIM_ID = re.compile(r"(?:^|\s)-id\s+([0-9a-f]{64})(?:\s|$)")


def shim_container(p: Proc) -> str | None:
    """The container id a containerd shim process names (``-id <64 hex>``), or None for a
    process that is no root shim."""
    if p.user != "root" or not p.name.startswith("containerd-shim"):
        return None
    m = _SHIM_ID.search(p.cmd)
    return m.group(1) if m else None


def _label(kind: str, text: str) -> str:
    s = f"{kind}:{clean(text)}"
    return s if len(s) <= LABEL_MAX else s[: LABEL_MAX - 1] + "…"


def gpu_owners(
    gpus: Sequence[GpuSample],
    procs: Mapping[int, Proc],
    requests: Iterable[RequestInfo],
    containers: Mapping[str, Container],
    *,
    cgroups: Mapping[int, str | None] | None = None,
    requests_user: str | None = None,
) -> dict[int, str]:
    """pid -> owner label for each GPU process that has one (see the module's words);
    a pid absent from the answer belongs to neither.

    ``containers``: the engine's containers by full id (``HostState.containers``);
    ``cgroups``: pid -> the container id its cgroup names (None: none), from proc.detail
    answers the caller holds, which win over the table's word."""
    leaders = {r.pid: r.id for r in requests if r.state == "running" and r.pid is not None}
    if requests_user is not None:
        # The agent runs requests as its own user: a leader pid the table shows as another
        # user's is a reused pid (the request's leader gone), not the request's.
        leaders = {
            pid: rid
            for pid, rid in leaders.items()
            if pid not in procs or procs[pid].user == requests_user
        }
    names = {cid: c.name for cid, c in containers.items()}
    out: dict[int, str] = {}
    for g in gpus:
        for gp in g.procs:
            pid = gp.pid
            if pid in out:
                continue  # on several GPUs: placed once
            owner = _owner(pid, procs, leaders, names, cgroups or {})
            if owner is not None:
                out[pid] = owner
    return out


def _owner(
    pid: int,
    procs: Mapping[int, Proc],
    leaders: Mapping[int, str],
    names: Mapping[str, str],
    cgroups: Mapping[int, str | None],
) -> str | None:
    if pid in cgroups:
        cid = cgroups[pid]
        if cid is not None and cid in names:
            return _label("ctr", names[cid] or cid[:12])
    seen: set[int] = set()
    cur: int | None = pid
    for _ in range(MAX_DEPTH):
        if cur is None or cur in seen:
            break
        seen.add(cur)
        if cur in leaders:
            return _label("req", leaders[cur])
        p = procs.get(cur)
        if p is None:
            break
        parent = procs.get(p.ppid)
        if parent is not None:
            cid = shim_container(parent)
            if cid is not None:
                # The shim's child is the container's init: the walk ends here either way.
                return _label("ctr", names[cid] or cid[:12]) if cid in names else None
        cur = p.ppid if p.ppid != cur else None
    return None


def host_gpu_owners(
    h: HostState, *, cgroups: Mapping[int, str | None] | None = None
) -> dict[int, str]:
    """:func:`gpu_owners` of what the console holds for ``h`` (its last sample's GPUs)."""
    if h.sample is None:
        return {}
    me = h.procs.get(h.hello.pid) if h.hello is not None else None
    return gpu_owners(
        h.sample.gpus, h.procs, h.requests.values(), h.containers, cgroups=cgroups,
        requests_user=me.user if me is not None else None,
    )  # fmt: skip
