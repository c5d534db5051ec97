"""The container subcommands: ``move`` (one journaled move between two hosts' engines) and
``containers`` (every host's containers, from the agents).

``move CONTAINER --from A --to B``: A and B are names of the inventory (-H, hosts file), or
targets such as ``root@10.0.0.7``; ``local`` is this machine, whose engine socket is opened
directly. Unfinished moves of an earlier console are finished first (:func:`recover_all`).
Each host's agent, where it answers, tells the move its GPUs and free memory for the
pre-checks. Progress goes to stderr, the result to stdout (``--json``: as JSON).

Exit codes: 0 moved (or, with --dry-run, would move), 1 refused, rolled back or failed
(the message says why), 2 bad usage.

Container names, images, ports, engine errors and progress messages are the hosts' text:
every text line goes through :func:`llmaos_agent.safetext.clean` (``_err``, ``_say``,
:func:`format_table`'s cells); ``--json`` is exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from llmaos_agent.collect.containers import default_socket
from llmaos_agent.protocol import Container
from llmaos_agent.safetext import clean
from llmaos_tui.cli_args import seconds
from llmaos_tui.fleet.inventory import HostSpec, InventoryError, build_inventory, parse_target
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.ssh import SshLink, SshOptions
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.fleet.watching import Watching
from llmaos_tui.formats import ago
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.journal import OPEN_ERRORS, MoveJournal

if TYPE_CHECKING:  # the docker SDK is optional: loaded by `move` only
    from llmaos_tui.ops.container_move import MoveResult, Progress
    from llmaos_tui.ops.docker_forward import Engine

LOCAL = "local"
FACTS_TIMEOUT = 15.0  # seconds to wait for an agent's first sample (GPUs, free memory)
BYTES_EVERY = 0.5  # seconds between two progress lines of one step's bytes


def add_parsers(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``move`` and ``containers`` subcommands, on ``cli.parser()``'s subparsers."""
    mv = sub.add_parser("move", help="move a container from one host to another")
    mv.add_argument("container", metavar="CONTAINER", help="name or id on the source host")
    mv.add_argument("--from", dest="src", required=True, metavar="A", help="source host")
    mv.add_argument("--to", dest="dst", required=True, metavar="B", help="target host")
    mv.add_argument("--commit", action="store_true", help="carry the container's file changes")
    mv.add_argument(
        "--keep-source", action="store_true", help="keep the source stopped instead of removing"
    )
    mv.add_argument("--dry-run", action="store_true", help="pre-check and show the plan only")
    mv.add_argument(
        "--live",
        action="store_true",
        help="checkpoint and restore (CRIU) instead of stop and start; says why not where "
        "it is unavailable",
    )
    mv.add_argument("--json", action="store_true", help="print the result as JSON")
    mv.add_argument(
        "--read-only", action="store_true", dest="move_read_only", help="refuse (as the console)"
    )
    mv.add_argument("--journal", help=argparse.SUPPRESS)  # tests: a private journal and log
    mv.add_argument("--audit", help=argparse.SUPPRESS)
    common(mv)
    ls = sub.add_parser("containers", help="list every host's containers")
    ls.add_argument("--json", action="store_true", help="as JSON")
    ls.add_argument(
        "--timeout", type=seconds, default=15.0, help="seconds to wait for hosts (default 15)"
    )
    common(ls)


def _err(msg: str) -> None:
    print(clean(f"llmaos-tui: {msg}"), file=sys.stderr)


def _say(text: str, *, err: bool = False) -> None:
    """A line of text output: it names containers and hosts, so it is cleaned."""
    print(clean(text), file=sys.stderr if err else sys.stdout)


def _options(args: argparse.Namespace) -> SshOptions:
    options = SshOptions()
    if args.known_hosts:
        options.known_hosts = args.known_hosts
    return options


def _resolve(names: list[str], args: argparse.Namespace) -> dict[str, HostSpec | None]:
    """Each name as an inventory host, a target, or (``local``) None for this machine."""
    specs = {s.name: s for s in build_inventory(args.hosts, args.hosts_file)}
    out: dict[str, HostSpec | None] = {}
    for name in names:
        if name in specs:
            out[name] = specs[name]
        elif name == LOCAL:
            out[name] = None
        else:
            found = parse_target(name)
            if len(found) != 1:
                raise InventoryError(f"{name!r} names {len(found)} hosts; a move needs one")
            out[name] = found[0]
    return out


# ------------------------------------------------------------------------------------ move


def run_move(args: argparse.Namespace) -> int:
    try:
        import docker  # noqa: F401, PLC0415 (probing for the optional SDK)
    except ImportError:
        _err("container moves need the docker SDK: pip install 'llmaos-tui[docker]'")
        return 1
    if args.src == args.dst:
        _err(f"--from and --to are both {args.src}: nothing to move")
        return 2
    try:
        journal = MoveJournal(args.journal) if args.journal else MoveJournal()
    except OPEN_ERRORS as exc:
        _err(f"cannot open the move journal: {exc}")
        return 1
    audit = AuditLog(args.audit) if args.audit else AuditLog()
    try:
        return _move(args, journal, audit)
    except InventoryError as exc:
        _err(str(exc))
        return 2
    finally:
        journal.close()  # the command's: opened before the service, closed after it


def _move(args: argparse.Namespace, journal: MoveJournal, audit: AuditLog) -> int:
    from llmaos_tui.ops.container_move import AUDIT_ACTION, MoveResult, Refusal  # noqa: PLC0415

    if args.read_only or args.move_read_only:
        why = "the console is read-only (--read-only): moves are refused"
        audit.append(action=AUDIT_ACTION, host=args.src, target=args.container,
                     after=args.dst, result=f"refused: {why}")  # fmt: skip
        res = MoveResult("refused", args.container, args.src, args.dst, message=why,
                         refusals=[Refusal("read-only", why)])  # fmt: skip
        return _report(res, args)
    hosts = _resolve([args.src, args.dst], args)
    return _report(asyncio.run(_move_with(args, hosts, journal, audit)), args)


async def _move_with(
    args: argparse.Namespace, hosts: dict[str, HostSpec | None], journal: MoveJournal,
    audit: AuditLog,
) -> MoveResult:  # fmt: skip
    """The move through the one move service (:class:`~llmaos_tui.ops.moves.Moves`), as
    the console makes it, on engines reached over this command's own SSH connections."""
    from llmaos_tui.ops.container_move import MoveResult, Refusal  # noqa: PLC0415
    from llmaos_tui.ops.docker_forward import local_engine, open_engine  # noqa: PLC0415
    from llmaos_tui.ops.moves import Moves, opened_engines  # noqa: PLC0415

    options = _options(args)

    def open_one(name: str) -> Engine:
        spec = hosts[name] if name in hosts else _resolve([name], args)[name]
        return local_engine(name, default_socket()) if spec is None else open_engine(spec, options)

    engine_for, close = opened_engines(open_one)
    moves = Moves(engine_for, audit, close_engines=close, journal=journal)
    printer = _progress_printer()
    try:
        for r in await moves.recover(progress=printer):
            _err(f"recovered an unfinished move of {r.container} ({r.source} -> {r.target}): "
                 f"{r.outcome}{': ' + r.message if r.message else ''}")  # fmt: skip
        # Both engines' SSH connections and the agents' facts at once: each is a round of
        # SSH handshakes, and in turn they were most of a short move's wall time.
        asked = asyncio.ensure_future(
            agent_facts({n: hosts[n] for n in (args.src, args.dst)}, options)
        )
        try:
            engines = await asyncio.gather(engine_for(args.src), engine_for(args.dst))
        except Exception as exc:  # noqa: BLE001 - no engine, no link, an SDK error: a refusal, nothing changed
            asked.cancel()
            why = f"cannot reach the engines: {_reason(exc)}"
            return MoveResult("refused", args.container, args.src, args.dst, message=why,
                              refusals=[Refusal("unreachable", why)])  # fmt: skip
        facts = await asked
        for eng in engines:
            h = facts.get(eng.name)
            if h is not None and h.sample is not None:
                eng.gpus, eng.mem_available = h.gpu_count, h.mem_available
        return await moves.move(
            args.src, args.dst, args.container, commit=args.commit,
            keep_source=args.keep_source, dry_run=args.dry_run, live=args.live,
            progress=printer,
        )  # fmt: skip
    finally:
        await close()


def _report(res: MoveResult, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(res.as_dict(), indent=2, default=str))
    else:
        from llmaos_tui.ops.container_move import describe  # noqa: PLC0415 (optional SDK)

        _say(describe(res))
        if res.outcome == "dry_run" and res.plan is not None:
            for step in res.plan.steps:
                _say(f"  {res.plan.label(step)}")
    return 0 if res.ok else 1


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _progress_printer() -> Callable[[Progress], None]:
    last: dict[str, float] = {}

    def show(p: Progress) -> None:
        if p.state == "bytes":
            now = time.monotonic()
            if now - last.get(p.step, 0.0) < BYTES_EVERY:
                return
            last[p.step] = now
            total = f" of {_mib(p.total)}" if p.total else ""
            _say(f"  {p.step}: {_mib(p.bytes)}{total}", err=True)
            return
        extra = f" ({_mib(p.bytes)})" if p.bytes else ""
        msg = f": {p.message}" if p.message else ""
        _say(f"{p.step}: {p.state}{extra}{msg}", err=True)

    return show


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# ------------------------------------------------------------------------ agents' facts


def _link(name: str, spec: HostSpec | None, options: SshOptions) -> Link:
    return LocalLink(name) if spec is None else SshLink(spec, options=options)


async def agent_facts(
    hosts: dict[str, HostSpec | None],
    options: SshOptions,
    timeout: float = FACTS_TIMEOUT,
) -> dict[str, HostState]:
    """Each host's agent, watched until it has sent a sample (or is down): its GPU count
    and free memory. A host whose agent cannot be reached is left with no sample."""
    return await watch([_link(n, s, options) for n, s in hosts.items()], timeout, _sampled)


def _sampled(h: HostState) -> bool:
    return h.status is HostStatus.DOWN or (h.status is HostStatus.UP and h.sample is not None)


def _listed(h: HostState) -> bool:
    # The first process pass after attach carries the containers' load, so wait for it.
    if h.status is HostStatus.DOWN:
        return True
    return h.status is HostStatus.UP and bool(h.procs) and h.containers_version > 0


async def watch(
    links: list[Link], timeout: float, settled: Callable[[HostState], bool]
) -> dict[str, HostState]:
    async with Watching(links) as w:
        await w.until(settled, timeout)
    return w.fleet.hosts


# ------------------------------------------------------------------------------ containers


async def run_containers(args: argparse.Namespace, links: list[Link]) -> int:
    if not links:
        _err("no host to list")
        return 2
    hosts = await watch(links, args.timeout, _listed)
    if args.json:
        doc = {"hosts": [_host_json(h) for h in hosts.values()]}
        print(json.dumps(doc, indent=2))
    else:
        print(format_table(hosts.values()))
    return 0 if all(h.status is not HostStatus.DOWN for h in hosts.values()) else 1


def _host_json(h: HostState) -> dict[str, Any]:
    caps = h.hello.caps if h.hello else None
    return {
        "name": h.name,
        "status": h.status.value,
        "reason": h.reason or None,
        "docker": caps.docker if caps else None,
        "docker_reason": caps.docker_reason if caps else None,
        "containers": [msgspec.to_builtins(c) for c in sorted_containers(h)],
    }


def sorted_containers(h: HostState) -> list[Container]:
    return sorted(h.containers.values(), key=lambda c: (c.state != "running", c.name))


def uptime(c: Container, now: float | None = None) -> str:
    if c.state != "running":
        return ""
    return ago(c.started, time.time() if now is None else now)


def format_table(hosts: Any) -> str:
    rows: list[tuple[str, ...]] = [
        ("HOST", "NAME", "IMAGE", "STATE", "HEALTH", "CPU", "MEM", "GPUS", "PORTS", "UP")
    ]
    notes = []
    for h in hosts:
        if h.status is HostStatus.DOWN:
            notes.append(f"{h.name}: down ({h.reason})")
            continue
        if h.hello is not None and not h.hello.caps.docker:
            notes.append(f"{h.name}: no containers ({h.hello.caps.docker_reason})")
        for c in sorted_containers(h):
            rows.append(tuple(clean(v) for v in (
                h.name, c.name, c.image, c.state, c.health or "", f"{c.cpu:.2f}",
                _mib(c.mem) if c.mem else "", _gpus(c.gpus), ",".join(c.ports), uptime(c),
            )))  # fmt: skip
    # Cleaned before the widths are taken: an escape is as wide as it is drawn.
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines + [clean(n) for n in notes])


def _gpus(n: int) -> str:
    return "all" if n < 0 else str(n) if n else ""
