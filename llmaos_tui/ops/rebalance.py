"""Balancing migrations on the live fleet: plan from what the agents report, apply, measure.

* :func:`problem_from_fleet` turns the fleet's state into planner input: at the
  ``cores`` level every busy process is a unit on the core it last ran on (moved
  by setting its affinity); at the ``hosts`` level every waiting request is a unit
  on its host (moved by the request-move protocol below).
* :func:`apply_move` carries one move out through the agents, audited.
* :func:`move_request` moves a queued request between hosts without ever losing it
  or running it twice: the target accepts it *held* under the same id, then the
  source gives it up, then the target releases it. If the source cannot give it
  up (it started it meanwhile, or it is unreachable), the target's held copy is
  withdrawn; if the release fails, the request waits held on the target, where the
  operator sees it.
* :func:`measure` is beta now, at a level, to set against the prediction.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from msgspec import Struct

from llmaos_agent.protocol import RequestInfo, RequestRef, RequestSpec, SetAffinity
from llmaos_tui.balance import (
    Budget,
    Constraints,
    Level,
    Move,
    Plan,
    Processor,
    Unit,
    beta_of,
    plan,
)
from llmaos_tui.fleet.link import LinkDown
from llmaos_tui.fleet.session import CallError
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.changes import ReadOnlyConsole, change

Caller = Callable[[str, Struct], Awaitable[Any]]

MIN_PROCESS_LOAD = 0.05
"""Processes below 5% of a core are left out: moving them cannot change beta much."""
PROTECTED = frozenset({"sshd", "sshd-session", "init", "systemd", "llmaos-agent"})

_PROC_UNIT = re.compile(r"^(?P<host>.+)/pid(?P<pid>\d+)@(?P<ct>[0-9.]+)$")
_CORE = re.compile(r"^(?P<host>.+)/cpu(?P<core>\d+)$")


class MoveFailed(Exception):
    """A move that was not made; the message says what state things are in."""


def _up(fleet: FleetState, hosts: list[str] | None) -> list[HostState]:
    names = hosts or list(fleet.hosts)
    return [
        fleet.hosts[n]
        for n in names
        if n in fleet.hosts
        and fleet.hosts[n].status is HostStatus.UP
        and fleet.hosts[n].sample is not None
    ]


def problem_from_fleet(
    fleet: FleetState, level: Level, hosts: list[str] | None = None
) -> tuple[list[Processor], list[Unit]]:
    procs: list[Processor] = []
    units: list[Unit] = []
    for h in _up(fleet, hosts):
        s = h.sample
        assert s is not None
        if level == "cores":
            agent_user = h.hello.host.user if h.hello else ""
            root = bool(h.hello and h.hello.caps.root)
            affinity = bool(h.hello and h.hello.caps.affinity)
            for i, load in enumerate(s.cpu):
                procs.append(Processor(id=f"{h.name}/cpu{i}", host=h.name, kind="core", load=load))
            for p in h.procs.values():
                load = min(1.0, p.cpu / 100.0)
                if p.core is None or load < MIN_PROCESS_LOAD or p.core >= len(s.cpu):
                    continue
                # What the agent would refuse is pinned here, so the plan never proposes it.
                pinned = (
                    not affinity
                    or p.pid <= 1
                    or p.name in PROTECTED
                    or (not root and p.user != agent_user)
                )
                units.append(
                    Unit(
                        id=f"{h.name}/pid{p.pid}@{p.create_time}", kind="process", load=load,
                        processor=f"{h.name}/cpu{p.core}", pinned=pinned, name=p.name,
                    )
                )  # fmt: skip
        elif level == "hosts":
            queued = [r for r in h.requests.values() if r.state == "queued"]
            busy = sum(s.cpu) + sum(r.cpus for r in queued)
            free = h.mem_total - s.mem.used if h.mem_total else None
            procs.append(
                Processor(id=h.name, host=h.name, kind="host", load=busy,
                          capacity=float(len(s.cpu)), mem_free=free)
            )  # fmt: skip
            for r in queued:
                units.append(
                    Unit(
                        id=f"{h.name}/{r.id}", kind="request_queued", load=float(r.cpus),
                        processor=h.name, mem=float(r.mem), gpus=r.gpus, name=r.name,
                        pinned=r.gpus > 0,  # GPU requests stay: the target may lack GPUs
                    )
                )  # fmt: skip
        else:  # gpus: requests are placed on GPUs when they start, not while queued
            for g in s.gpus:
                procs.append(
                    Processor(id=f"{h.name}/gpu{g.index}", host=h.name, kind="gpu",
                              load=g.util or 0.0)
                )  # fmt: skip
    return procs, units


def plan_fleet(
    fleet: FleetState, level: Level, hosts: list[str] | None = None, budget: Budget | None = None
) -> Plan:
    processors, units = problem_from_fleet(fleet, level, hosts)
    if not processors:
        return Plan(level, 0.0, 0.0, 0.0, (), (), "no host is up with samples")
    result = plan(processors, units, level=level, budget=budget, constraints=Constraints())
    if level == "gpus" and not result.moves:
        note = "GPU work is placed when requests start; nothing queued to re-place"
        return Plan(level, result.beta_before, result.beta_after_predicted, result.floor,
                    (), result.slots, note)  # fmt: skip
    return result


def measure(fleet: FleetState, level: Level, hosts: list[str] | None = None) -> float:
    """Beta now, as the plan computes it (per host for cores and GPUs, across hosts)."""
    slots: list[tuple[str, float, float]] = []
    for h in _up(fleet, hosts):
        s = h.sample
        assert s is not None
        if level == "cores":
            slots += [(h.name, 1.0, x) for x in s.cpu]
        elif level == "gpus":
            slots += [(h.name, 1.0, g.util or 0.0) for g in s.gpus]
        else:
            slots.append(("fleet", float(len(s.cpu)), sum(s.cpu)))
    return beta_of(slots)


@dataclass
class Outcome:
    move: Move
    ok: bool
    message: str


async def apply_move(
    m: Move,
    caller_for: Callable[[str], Caller],
    *,
    audit: AuditLog,
    read_only: bool,
) -> Outcome:
    """Carry out one move; failures come back as an Outcome, never as an exception."""
    try:
        if m.kind == "process":
            msg = await _move_process(m, caller_for, audit, read_only)
        elif m.kind == "request_queued":
            src_host, _, rid = m.unit.partition("/")
            msg = await move_request(
                rid, src_host, m.dst, caller_for, audit=audit, read_only=read_only
            )
        else:
            return Outcome(m, False, f"moves of {m.kind} are not carried out from a plan yet")
    except (MoveFailed, ReadOnlyConsole, CallError, LinkDown) as exc:
        return Outcome(m, False, str(exc))
    return Outcome(m, True, msg)


async def _move_process(
    m: Move, caller_for: Callable[[str], Caller], audit: AuditLog, read_only: bool
) -> str:
    u, d = _PROC_UNIT.match(m.unit), _CORE.match(m.dst)
    if u is None or d is None:
        raise MoveFailed(f"not a process move: {m.unit} -> {m.dst}")
    host, pid, ct, core = u["host"], int(u["pid"]), float(u["ct"]), int(d["core"])
    await change(
        caller_for(host), "proc.affinity", SetAffinity(pid=pid, create_time=ct, cores=[core]),
        host=host, target=f"pid {pid} ({m.name})", audit=audit, read_only=read_only,
        before=f"on {m.src}",
    )  # fmt: skip
    return f"pid {pid} ({m.name}) pinned to core {core}"


async def move_request(
    rid: str,
    src: str,
    dst: str,
    caller_for: Callable[[str], Caller],
    *,
    audit: AuditLog,
    read_only: bool,
) -> str:
    """Move queued request ``rid`` from host ``src`` to ``dst``: never lost, never run twice."""
    if read_only:
        raise ReadOnlyConsole("read-only: this console makes no changes (--read-only)")
    s_call, d_call = caller_for(src), caller_for(dst)
    info: RequestInfo = await s_call("requests.get", RequestRef(id=rid))
    if info.state not in ("queued", "held"):
        raise MoveFailed(f"request {rid} is {info.state} on {src}; only waiting requests move")
    spec = RequestSpec(
        argv=info.argv, shell=info.shell, priority=info.priority, cpus=info.cpus,
        gpus=info.gpus, share_gpu=info.share_gpu, mem=info.mem, name=info.name, id=rid,
        hold=True,
    )  # fmt: skip
    kw: dict[str, Any] = {"audit": audit, "read_only": read_only}
    # 1. The target accepts it, held, under the same id.
    try:
        await change(d_call, "requests.submit", spec, host=dst, target=f"request {rid}", **kw)
    except (CallError, LinkDown) as exc:
        await _withdraw_quietly(d_call, dst, rid, audit)  # in case only the answer was lost
        raise MoveFailed(f"{dst} did not accept {rid}: {exc}; it stays on {src}") from None
    # 2. The source gives it up.
    try:
        await change(s_call, "requests.withdraw", RequestRef(id=rid), host=src,
                     target=f"request {rid}", before=info.state, **kw)  # fmt: skip
    except (CallError, LinkDown) as exc:
        left = await _withdraw_quietly(d_call, dst, rid, audit)
        where = "" if left else f"; WARNING: a held copy may remain on {dst}: cancel it there"
        raise MoveFailed(f"{src} kept {rid} ({exc}){where}") from None
    # 3. The target lets it run (unless the operator held it at the source).
    if info.state == "held":
        return f"request {rid} moved {src} -> {dst} (held, as it was)"
    try:
        await change(d_call, "requests.release", RequestRef(id=rid), host=dst,
                     target=f"request {rid}", before="held", **kw)  # fmt: skip
    except (CallError, LinkDown) as exc:
        raise MoveFailed(f"request {rid} is on {dst}, held: release it there ({exc})") from None
    return f"request {rid} moved {src} -> {dst}"


async def _withdraw_quietly(call: Caller, host: str, rid: str, audit: AuditLog) -> bool:
    """Take back a held copy; True when the target has no copy left."""
    try:
        await change(call, "requests.withdraw", RequestRef(id=rid), host=host,
                     target=f"request {rid}", audit=audit, read_only=False,
                     before="held (move rolled back)")  # fmt: skip
    except CallError as exc:
        return "no request" in str(exc)
    except LinkDown:
        return False
    return True
