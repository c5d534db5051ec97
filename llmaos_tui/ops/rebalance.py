"""Balancing migrations on the live fleet: plan from what the agents report, apply, measure.

* :func:`problem_from_fleet` turns the fleet's state into planner input: at the
  ``cores`` level every busy process is a unit on the core it last ran on (moved
  by setting its affinity); at the ``hosts`` level every waiting request and every
  running container is a unit on its host (requests moved by the request-move
  protocol below, containers by the journaled container move). ``units`` chooses
  which of the two a host-level plan may move; the others stay as pinned load.
* :func:`apply_move` carries one move out through the agents (a container through
  both hosts' engines, :class:`ContainerMoves`), audited.
* :func:`move_request` moves a queued request between hosts without ever losing it
  or running it twice: the target accepts it *held* under the same id, then the
  source gives it up, then the target releases it. If the source cannot give it
  up (it started it meanwhile), the target's held copy is withdrawn; if the release
  fails, the request waits held on the target, where the operator sees it. A step
  whose answer is lost is resolved by asking that host about the id, never by
  guessing, and a copy that cannot be accounted for is named in the error.
* :func:`measure` is beta now, at a level, to set against the prediction.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from msgspec import Struct

from llmaos_agent.protocol import (
    NOT_FOUND,
    Container,
    RequestInfo,
    RequestRef,
    RequestSpec,
    SetAffinity,
)
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
from llmaos_tui.ops.audit import AuditLog, AuditUnavailable
from llmaos_tui.ops.changes import ReadOnlyConsole, change
from llmaos_tui.ops.journal import MoveJournal

if TYPE_CHECKING:  # the docker SDK is optional: loaded by the first container move
    from llmaos_tui.ops.container_move import Progress
    from llmaos_tui.ops.docker_forward import Engine

Caller = Callable[[str, Struct], Awaitable[Any]]

RESOLVE_WAIT_S = 30.0
"""How long a request move asks a host that did not answer a step before it says the
outcome is unknown (a reconnect after a cut link takes a few seconds)."""
RESOLVE_POLL_S = 0.5

HostUnits = Literal["requests", "containers"]
"""What a host-level plan may move: waiting requests, running containers."""
HOST_UNITS: frozenset[HostUnits] = frozenset(get_args(HostUnits))

NOT_TRIED = "not tried"
"""How a move left out after an earlier one failed ("stop at the first failure") is
reported."""
MIN_PROCESS_LOAD = 0.05
"""Processes below 5% of a core are left out: moving them cannot change beta much."""
PROTECTED = frozenset({"sshd", "sshd-session", "init", "systemd", "llmaos-agent"})

_PROC_UNIT = re.compile(r"^(?P<host>.+)/pid(?P<pid>\d+)@(?P<ct>[0-9.]+)$")
# A container unit: host, name and the first 12 hex digits of its id, "gpu1/ct:web@3f2a...".
# The move goes by the id (docker resolves a unique prefix), so a container of the same
# name made since the plan is never moved in its place; the name is for people.
_CT_UNIT = re.compile(r"^(?P<host>.+)/ct:(?P<name>[^/]+)@(?P<cid>[0-9a-f]{12,64})$")
CONTAINER_COST = 4.0
"""A container move's cost against a request's 1: it stops the service for seconds and may
stream an image and volumes; the planner prefers requests when the gain is the same."""
KEPT_SOURCE = re.compile(r"\.moved-[0-9A-Za-z]+$")
"""The name a container move leaves on a kept source (``NAME.moved-ID``)."""
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
    fleet: FleetState,
    level: Level,
    hosts: list[str] | None = None,
    units: Collection[HostUnits] | None = None,
) -> tuple[list[Processor], list[Unit]]:
    """Planner input from what the agents report. ``units`` (hosts level only): what the
    plan may move, requests and/or containers (default both); the others stay pinned, so
    their load and memory still count where they are."""
    movable = HOST_UNITS if units is None else frozenset(units)
    procs: list[Processor] = []
    out: list[Unit] = []
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
                out.append(
                    Unit(
                        id=f"{h.name}/pid{p.pid}@{p.create_time}", kind="process", load=load,
                        processor=f"{h.name}/cpu{p.core}", pinned=pinned, name=p.name,
                    )
                )  # fmt: skip
        elif level == "hosts":
            procs.append(host_processor(h))
            for r in h.requests.values():
                if r.state != "queued":
                    continue
                out.append(
                    Unit(
                        id=f"{h.name}/{r.id}", kind="request_queued", load=float(r.cpus),
                        processor=h.name, mem=float(r.mem), gpus=r.gpus, name=r.name,
                        # GPU requests stay: the target may lack GPUs
                        pinned=r.gpus > 0 or "requests" not in movable,
                    )
                )  # fmt: skip
            out.extend(
                container_unit(h, c, movable="containers" in movable)
                for c in h.containers.values()
                if c.state == "running"
            )
        else:  # gpus: requests are placed on GPUs when they start, not while queued
            for g in s.gpus:
                procs.append(
                    Processor(id=f"{h.name}/gpu{g.index}", host=h.name, kind="gpu",
                              load=g.util or 0.0)
                )  # fmt: skip
    return procs, out


def host_processor(h: HostState) -> Processor:
    """A host as one processor: capacity its cores, load its busy cores plus the cores its
    waiting requests ask for (demand not running yet), free memory and free GPUs."""
    s = h.sample
    assert s is not None
    queued = sum(r.cpus for r in h.requests.values() if r.state == "queued")
    # Available memory, as the container move's pre-check reads it (reclaimable cache is
    # free); a host that reports none falls back to total less used.
    avail = h.mem_available
    free: float | None = float(avail) if avail else None
    if free is None and h.mem_total:
        free = float(max(0, h.mem_total - s.mem.used))
    n_gpus = len(s.gpus)
    # GPUs held now: running containers' (0 none, -1 all of them) and running requests'
    # (a shared GPU is not held). A host whose agent sees no GPU has none to give: 0.
    held = sum(n_gpus if c.gpus < 0 else c.gpus for c in h.containers.values()
               if c.state == "running")  # fmt: skip
    held += sum(r.gpus for r in h.requests.values() if r.state == "running" and not r.share_gpu)
    return Processor(
        id=h.name, host=h.name, kind="host", load=sum(s.cpu) + queued,
        capacity=float(len(s.cpu)), mem_free=free, gpus_free=max(0, n_gpus - held),
    )  # fmt: skip


def container_unit(h: HostState, c: Container, *, movable: bool = True) -> Unit:
    """A running container of host ``h`` as a unit: its load the cores it uses, its memory
    its RSS, its GPUs those it asked for, its replica set its compose service.

    Pinned (the plan never proposes it, though its load counts where it is) when a move
    would not be safe or would not stay made:

    * a bind mount: the host path's data does not travel with it (the move refuses a
      path the target lacks, and one it has holds other data);
    * all GPUs (``--gpus all``): on another host "all" is another set of devices, which
      the planner cannot weigh; a container with a count of GPUs moves where
      ``gpus_free`` has room (the planner's check);
    * another orchestrator's (swarm, kubernetes, nomad, ecs): it would reschedule or
      fight the move. Compose is not one: it started the container and leaves it to the
      engine, and the move carries its labels, so compose services move (their replicas
      kept apart, below);
    * a health check that is failing or still starting: the move verifies health on the
      target and would roll back;
    * a source a container move kept (``NAME.moved-ID``): the console's own leftover;
    * on a host whose agent runs read-only (``daemon --read-only``: no change there);
    * ``movable=False``: the operator left containers out of this plan.
    """
    bind = any(v.startswith("/") for v in c.volumes)  # "name:/dest" or "/host/path:/dest"
    pinned = (
        not movable
        or not takes_containers(h)
        or bind
        or c.gpus < 0
        or c.orchestrator is not None
        or c.health in ("unhealthy", "starting")
        or KEPT_SOURCE.search(c.name) is not None
    )
    # Replicas of one compose service: anti-affinity, so a plan never stacks two on a host
    # (and across hosts, so the same service on two hosts is one group).
    group = f"compose:{c.project}/{c.service}" if c.project and c.service else None
    return Unit(
        id=f"{h.name}/ct:{c.name}@{c.id[:12]}", kind="container", load=c.cpu,
        processor=h.name, mem=float(c.mem), gpus=max(0, c.gpus), pinned=pinned,
        group=group, cost=CONTAINER_COST, name=c.name,
    )  # fmt: skip


@dataclass(frozen=True)
class PlanInput:
    """What the planner gets, taken from the fleet at one moment (:func:`plan_input`), so
    the plan itself (:func:`plan_from`, pure) may run on a worker thread while the fleet
    keeps changing on the event loop."""

    level: Level
    processors: tuple[Processor, ...]
    units: tuple[Unit, ...]
    constraints: Constraints


def plan_input(
    fleet: FleetState,
    level: Level,
    hosts: list[str] | None = None,
    units: Collection[HostUnits] | None = None,
) -> PlanInput:
    processors, found = problem_from_fleet(fleet, level, hosts, units)
    return PlanInput(
        level, tuple(processors), tuple(found), constraints_for(fleet, processors, found)
    )


def plan_from(inp: PlanInput, budget: Budget | None = None) -> Plan:
    """The plan for ``inp``; no I/O and no fleet state, so safe off the event loop (a small
    plan's exact refinement takes up to a few hundred milliseconds)."""
    level = inp.level
    if not inp.processors:
        return Plan(level, 0.0, 0.0, 0.0, (), (), "no host is up with samples")
    result = plan(
        list(inp.processors), list(inp.units), level=level, budget=budget,
        constraints=inp.constraints,
    )  # fmt: skip
    if level == "gpus" and not result.moves:
        note = "GPU work is placed when requests start; nothing queued to re-place"
        return Plan(level, result.beta_before, result.beta_after_predicted, result.floor,
                    (), result.slots, note)  # fmt: skip
    return result


def plan_fleet(
    fleet: FleetState,
    level: Level,
    hosts: list[str] | None = None,
    budget: Budget | None = None,
    units: Collection[HostUnits] | None = None,
) -> Plan:
    return plan_from(plan_input(fleet, level, hosts, units), budget)


def takes_containers(h: HostState | None) -> bool:
    """Whether a container may be moved to (or from) host ``h``: its agent reports a Docker
    engine, and was not started read-only (``daemon --read-only``: no change there)."""
    return h is not None and h.hello is not None and h.docker and not h.hello.caps.read_only


def constraints_for(
    fleet: FleetState, processors: Sequence[Processor], units: Sequence[Unit]
) -> Constraints:
    """The planner's constraints for this fleet: containers never go to a host that cannot
    take them (:func:`takes_containers`); the rest as the planner's defaults."""
    closed = [p.id for p in processors if not takes_containers(fleet.hosts.get(p.host))]
    forbidden = frozenset(
        (u.id, pid) for u in units if u.kind == "container" and not u.pinned for pid in closed
    )
    return Constraints(forbidden=forbidden)


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


@dataclass
class ContainerMoves:
    """What carrying out a plan's container moves needs, beyond the agents' calls.

    ``engine_for`` gives a host's engine on the running loop (an
    :class:`~llmaos_tui.ops.engine_pool.EnginePool`'s ``get``: forwarded over the host's
    link); ``journal`` is the move journal (the ``move`` command's and the console's, so
    an unfinished move is finished by whichever starts next); ``progress`` hears each
    step's news, from the move's worker thread (post it on, draw nothing there).
    """

    engine_for: Callable[[str], Awaitable[Engine]]
    journal: MoveJournal
    progress: Callable[[Move, Progress], None] | None = None
    stop_timeout: int = 10
    settle: float = 3.0


async def apply_move(
    m: Move,
    caller_for: Callable[[str], Caller],
    *,
    audit: AuditLog,
    read_only: bool,
    containers: ContainerMoves | None = None,
) -> Outcome:
    """Carry out one move; failures come back as an Outcome, never as an exception.

    A move whose audit line could not be written is not started (checked first)."""
    if not read_only:
        try:
            audit.check()
        except AuditUnavailable as exc:
            return Outcome(m, False, f"not started: {exc}")
    try:
        if m.kind == "process":
            msg = await _move_process(m, caller_for, audit, read_only)
        elif m.kind == "request_queued":
            src_host, _, rid = m.unit.partition("/")
            msg = await move_request(
                rid, src_host, m.dst, caller_for, audit=audit, read_only=read_only
            )
        elif m.kind == "container":
            msg = await move_container(m, containers, audit=audit, read_only=read_only)
        else:
            return Outcome(m, False, f"moves of {m.kind} are not carried out from a plan yet")
    except (MoveFailed, ReadOnlyConsole, CallError, LinkDown) as exc:
        return Outcome(m, False, str(exc))
    except OSError as exc:  # the console's audit log could not be written
        return Outcome(m, False, f"audit log: {exc}")
    return Outcome(m, True, msg)


async def move_container(
    m: Move, containers: ContainerMoves | None, *, audit: AuditLog, read_only: bool
) -> str:
    """Move the plan's container ``m.unit`` from host ``m.src`` to ``m.dst`` through the
    journaled container move (:class:`~llmaos_tui.ops.container_move.MoveEngine`): it ends
    moved and verified, or with the source running as before. The move's blocking docker
    calls run on a worker thread; this waits on the loop. Raises :class:`MoveFailed`."""
    if read_only:
        raise ReadOnlyConsole("read-only: this console makes no changes (--read-only)")
    u = _CT_UNIT.match(m.unit)
    if u is None or u["host"] != m.src:
        raise MoveFailed(f"not a container move: {m.unit} {m.src} -> {m.dst}")
    if containers is None:
        raise MoveFailed("container moves need the hosts' engines, which this caller lacks")
    name, cid = u["name"], u["cid"]
    try:
        from llmaos_tui.ops.container_move import (  # noqa: PLC0415 (optional SDK)
            MoveEngine,
            describe,
        )
    except ImportError:
        raise MoveFailed(
            "container moves need the docker SDK: pip install 'llmaos-tui[docker]'"
        ) from None
    try:
        src = await containers.engine_for(m.src)
        dst = await containers.engine_for(m.dst)
    except Exception as exc:  # noqa: BLE001 - no engine, no link, an SDK error: nothing changed
        raise MoveFailed(
            f"{name} stays on {m.src}: cannot reach the engines: {_why(exc)}"
        ) from None
    mover = MoveEngine(
        src, dst, containers.journal, audit, read_only=read_only,
        stop_timeout=containers.stop_timeout, settle=containers.settle,
    )  # fmt: skip
    hear = containers.progress

    def progress(p: Progress) -> None:
        if hear is not None:
            hear(m, p)

    try:
        res = await asyncio.to_thread(mover.move, cid, progress=progress)
    except Exception as exc:  # noqa: BLE001 - a failure beyond the move's own: reported, journaled
        raise MoveFailed(f"{name} {m.src} -> {m.dst}: {_why(exc)}; see the move journal") from None
    if not res.ok:
        raise MoveFailed(describe(res, one_line=True))
    return describe(res, one_line=True)


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "explanation", None) or exc) or type(exc).__name__


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
    resolve_wait: float = RESOLVE_WAIT_S,
) -> str:
    """Move queued request ``rid`` from host ``src`` to ``dst``: never lost, never run twice.

    Every step whose answer does not come (a cut link, a timeout) has an unknown outcome:
    it is resolved by asking that host about ``rid`` (waiting up to ``resolve_wait`` for it
    to come back), never by guessing. Only a copy this move made is ever withdrawn, and a
    copy that cannot be accounted for is named in the error, held (so it cannot run)."""
    if read_only:
        raise ReadOnlyConsole("read-only: this console makes no changes (--read-only)")
    mv = _RequestMove(rid, src, dst, caller_for(src), caller_for(dst), audit, resolve_wait)
    info: RequestInfo = await mv.s_call("requests.get", RequestRef(id=rid))
    if info.state not in ("queued", "held"):
        raise MoveFailed(f"request {rid} is {info.state} on {src}; only waiting requests move")
    spec = RequestSpec(
        argv=info.argv, shell=info.shell, priority=info.priority, cpus=info.cpus,
        gpus=info.gpus, share_gpu=info.share_gpu, mem=info.mem, name=info.name, id=rid,
        hold=True,
    )  # fmt: skip
    await mv.submit_held(spec)
    await mv.withdraw_source(info.state)
    if info.state == "held":  # the operator held it at the source: it stays held
        return f"request {rid} moved {src} -> {dst} (held, as it was)"
    return await mv.release_target()


@dataclass(frozen=True)
class _RequestMove:
    """The three steps of :func:`move_request`, each resolving its own unknown outcome."""

    rid: str
    src: str
    dst: str
    s_call: Caller
    d_call: Caller
    audit: AuditLog
    resolve_wait: float

    async def _change(self, call: Caller, method: str, host: str, **kw: Any) -> None:
        await change(call, method, RequestRef(id=self.rid), host=host,
                     target=f"request {self.rid}", audit=self.audit, read_only=False,
                     **kw)  # fmt: skip

    async def submit_held(self, spec: RequestSpec) -> None:
        """1. The target accepts it, held, under the same id."""
        rid, src, dst = self.rid, self.src, self.dst
        try:
            await change(self.d_call, "requests.submit", spec, host=dst, target=f"request {rid}",
                         audit=self.audit, read_only=False)  # fmt: skip
        except CallError as exc:  # a clear no: nothing of ours is there
            raise MoveFailed(f"{dst} did not accept {rid}: {exc}; it stays on {src}") from None
        except LinkDown as exc:
            there = await _ask(self.d_call, rid, self.resolve_wait)
            if there is None:
                raise MoveFailed(
                    f"{dst} did not answer whether it took {rid} ({exc}); it stays on {src}. "
                    f"If {dst} has a copy it is HELD there (it cannot run): withdraw it there "
                    f"(llmaos-tui cancel {rid}) once {dst} is back"
                ) from None
            if not there:
                raise MoveFailed(f"{dst} did not take {rid} ({exc}); it stays on {src}") from None
            if not _same(there, spec):
                raise MoveFailed(f"{dst} has another request {rid}; {rid} stays on {src}") from None
            # It took it; only the answer was lost: carry on.

    async def withdraw_source(self, state: str) -> None:
        """2. The source gives it up (else the held copy on the target is taken back)."""
        rid, src, dst = self.rid, self.src, self.dst
        try:
            await self._change(self.s_call, "requests.withdraw", src, before=state)
        except (CallError, LinkDown) as exc:
            kept = (
                await _ask(self.s_call, rid, self.resolve_wait)
                if isinstance(exc, LinkDown)
                else True
            )
            if kept is None:
                raise MoveFailed(
                    f"{src} did not answer whether it gave {rid} up ({exc}); the copy on {dst} "
                    f"stays HELD (it cannot run). Once {src} is back: if it still has {rid}, "
                    f"withdraw the copy on {dst}; if not, release it on {dst}"
                ) from None
            if kept:
                why = f"{src} kept {rid} ({exc})"
                await _take_back(self.d_call, dst, rid, self.audit, self.resolve_wait, why=why)
                raise MoveFailed(f"{why}; the held copy on {dst} is withdrawn") from None
            # The source gave it up; only the answer was lost: carry on.

    async def release_target(self) -> str:
        """3. The target lets it run."""
        rid, src, dst = self.rid, self.src, self.dst
        try:
            await self._change(self.d_call, "requests.release", dst, before="held")
        except (CallError, LinkDown) as exc:
            now = (
                await _ask(self.d_call, rid, self.resolve_wait)
                if isinstance(exc, LinkDown)
                else None
            )
            if now is not None and now is not False and now.state != "held":
                return f"request {rid} moved {src} -> {dst}"  # released; the answer was lost
            raise MoveFailed(f"request {rid} is on {dst}, held: release it there ({exc})") from None
        return f"request {rid} moved {src} -> {dst}"


def _same(there: RequestInfo, spec: RequestSpec) -> bool:
    """Whether the target's ``rid`` is the copy this move submitted (not another's)."""
    return there.argv == spec.argv and there.name == spec.name and there.state == "held"


async def _ask(call: Caller, rid: str, wait: float) -> RequestInfo | Literal[False] | None:
    """What a host says of ``rid`` now: its info, False when it has no such request, None
    when it did not answer within ``wait`` seconds (it is asked again as it comes back)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            info: RequestInfo = await call("requests.get", RequestRef(id=rid))
        except CallError as exc:
            if exc.code == NOT_FOUND:
                return False
        except LinkDown:
            pass
        else:
            return info
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(RESOLVE_POLL_S)


async def _take_back(
    call: Caller, host: str, rid: str, audit: AuditLog, wait: float, *, why: str
) -> None:
    """Withdraw the held copy this move made on ``host``; MoveFailed, loudly, when that
    cannot be done or confirmed (the copy is held, so it cannot run meanwhile)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            await change(call, "requests.withdraw", RequestRef(id=rid), host=host,
                         target=f"request {rid}", audit=audit, read_only=False,
                         before="held (move rolled back)")  # fmt: skip
            return
        except CallError as exc:
            if exc.code == NOT_FOUND:
                return  # already gone
            raise MoveFailed(
                f"{why}; WARNING: the held copy of {rid} on {host} could not be withdrawn "
                f"({exc}): cancel it there"
            ) from None
        except LinkDown as exc:
            if time.monotonic() >= deadline:
                raise MoveFailed(
                    f"{why}; WARNING: {host} did not answer ({exc}): a HELD copy of {rid} "
                    f"remains there; withdraw it there once it is back"
                ) from None
        await asyncio.sleep(RESOLVE_POLL_S)
