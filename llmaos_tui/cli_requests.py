"""The request subcommands: ``submit``, ``requests``, ``prio``, ``hold``, ``release``,
``top``, ``cancel``, ``log``. Each opens short sessions with the named hosts' agents.

Exit codes: 0 done, 1 the agent refused or a host could not be reached (the
message says which), 2 bad usage.

Request names, argv, reasons, log output and the agents' errors are the hosts' text: the
text output goes through :func:`llmaos_agent.safetext.clean` (:func:`_err`, :func:`_row`,
:func:`_line`; a log with newlines and tabs kept), ``--json`` is exact (``json.dumps``
escapes every control and non-ASCII character). ``requests`` says which hosts' agents
report their queue unavailable (the hello's ``caps.queue``), in text and in ``--json``
(``queues``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import msgspec

from llmaos_agent.protocol import (
    LogQuery,
    Reprioritize,
    RequestInfo,
    RequestList,
    RequestQuery,
    RequestRef,
    RequestSpec,
    RequestState,
)
from llmaos_agent.safetext import clean
from llmaos_tui.fleet.link import Link, LinkDown
from llmaos_tui.fleet.oneshot import connected
from llmaos_tui.fleet.session import AgentSession, CallError
from llmaos_tui.ops.audit import AuditLog, identity_of
from llmaos_tui.ops.changes import ReadOnlyConsole, change


def _err(msg: str) -> None:
    print(clean(f"llmaos-tui: {msg}"), file=sys.stderr)


def _line(text: str) -> None:
    """One line of text output (it holds a host's text)."""
    print(clean(text))


def _json(obj: Any) -> str:
    return json.dumps(msgspec.to_builtins(obj), indent=2)


async def run_request_command(args: argparse.Namespace, links: list[Link]) -> int:
    if not links:
        _err("no host to act on")
        return 2
    try:
        if args.cmd == "requests":
            return await _list(args, links)
        if args.cmd == "submit":
            if len(links) != 1:
                _err("submit goes to one host: give one -H (or none for this machine)")
                return 2
            return await _submit(args, links[0])
        return await _on_request(args, links)
    except LinkDown as exc:
        _err(str(exc))
        return 1


async def _submit(args: argparse.Namespace, link: Link) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        _err("submit: give the command after --")
        return 2
    try:
        spec = RequestSpec(
            argv=[" ".join(argv)] if args.shell else argv,
            shell=args.shell,
            priority=args.priority,
            cpus=args.cpus,
            gpus=args.gpus,
            share_gpu=args.share_gpu,
            mem=args.mem,
            name=args.name,
            cwd=args.cwd,
        )
        msgspec.json.decode(msgspec.json.encode(spec), type=RequestSpec)  # bounds, as the agent
    except (msgspec.ValidationError, TypeError) as exc:
        _err(f"submit: {exc}")
        return 2
    async with connected(link) as session:
        try:
            info: RequestInfo = await _change(args, session, link, "requests.submit", spec,
                                              f"request: {' '.join(argv)[:200]}")  # fmt: skip
        except (CallError, ReadOnlyConsole) as exc:
            _err(f"{link.name}: {exc}")
            return 1
    if args.json:
        print(_json({"host": link.name, **msgspec.to_builtins(info)}))
    else:
        _line(f"{link.name} {info.id} {info.state} priority {info.priority}")
    return 0


async def _change(
    args: argparse.Namespace,
    session: AgentSession,
    link: Link,
    method: str,
    params: msgspec.Struct,
    target: str,
    before: str = "",
) -> Any:
    return await change(
        session.call,
        method,
        params,
        host=link.name,
        target=target,
        audit=AuditLog(identity_for=identity_of({link.name: link})),
        read_only=args.read_only,
        before=before,
    )


async def _list(args: argparse.Namespace, links: list[Link]) -> int:
    states: list[RequestState] = [] if args.all else ["queued", "held", "running"]

    queues: dict[str, dict[str, Any]] = {}

    async def one(link: Link) -> tuple[str, RequestList | str]:
        try:
            async with connected(link) as session:
                if session.hello is not None:
                    caps = session.hello.caps
                    queues[link.name] = {"available": caps.queue, "reason": caps.queue_reason}
                return link.name, await session.call("requests.list", RequestQuery(states=states))
        except (LinkDown, CallError, OSError, asyncio.TimeoutError) as exc:
            return link.name, str(exc) or type(exc).__name__

    results = await asyncio.gather(*(one(link) for link in links))
    failed = [(h, r) for h, r in results if isinstance(r, str)]
    if args.json:
        out = {
            "hosts": {
                h: (msgspec.to_builtins(r.requests) if isinstance(r, RequestList) else {"error": r})
                for h, r in results
            },
            # Each host reached: whether its agent's request queue works, and why not.
            "queues": {h: queues[h] for h, _ in results if h in queues},
        }
        print(json.dumps(out, indent=2))
    else:
        rows = [(h, r) for h, lst in results if isinstance(lst, RequestList) for r in lst.requests]
        rows.sort(key=lambda hr: (hr[1].state != "running", -hr[1].priority, hr[1].seq))
        print(f"{'HOST':<14} {'ID':<12} {'STATE':<9} {'PRIO':>5} {'CPUS':>4} {'GPUS':>4}  "
              f"{'NAME':<20} WHERE / WHY")  # fmt: skip
        for h, r in rows:
            print(_row(h, r))
        for h, _ in results:
            q = queues.get(h)
            if q is not None and not q["available"]:
                _line(f"{h}: queue unavailable: {q['reason'] or 'no reason given'}")
    for h, why in failed:
        _err(f"{h}: {why}")
    return 1 if failed else 0


def _row(host: str, r: RequestInfo) -> str:
    """One request as a line of the table: each text field cleaned, then cut to its width
    (so an escape counts in the width it takes on screen)."""
    return (
        f"{clean(host)[:14]:<14} {clean(r.id):<12} {r.state:<9} {r.priority:>5} {r.cpus:>4} "
        f"{r.gpus:>4}  {clean(r.name)[:20]:<20} {clean(r.reason)[:60]}"
    )


async def _on_request(args: argparse.Namespace, links: list[Link]) -> int:
    """prio/hold/release/top/cancel/log: find the host that holds ID, act there."""
    for link in links:
        try:
            async with connected(link) as session:
                try:
                    info: RequestInfo = await session.call("requests.get", RequestRef(id=args.id))
                except CallError:
                    continue  # not on this host
                return await _act(args, session, link, info)
        except (LinkDown, OSError, asyncio.TimeoutError) as exc:
            _err(f"{link.name}: {exc}")
    _err(f"no request {args.id!r} on {', '.join(link.name for link in links)}")
    return 1


async def _act(
    args: argparse.Namespace, session: AgentSession, link: Link, info: RequestInfo
) -> int:
    host = link.name
    if args.cmd == "log":
        return await _log(args, session, info)
    before = f"{info.state} priority {info.priority}"
    params: msgspec.Struct = RequestRef(id=info.id)
    if args.cmd == "prio":
        params = Reprioritize(id=info.id, priority=args.priority)
        try:  # the bounds, as the agent checks them
            msgspec.json.decode(msgspec.json.encode(params), type=Reprioritize)
        except msgspec.ValidationError as exc:
            _err(f"prio: {exc}")
            return 2
    try:
        new: RequestInfo = await _change(args, session, link, f"requests.{args.cmd}", params,
                                         f"request {info.id}", before)  # fmt: skip
    except (CallError, ReadOnlyConsole) as exc:
        _err(f"{host}: {exc}")
        return 1
    if args.json:
        print(_json({"host": host, **msgspec.to_builtins(new)}))
    else:
        _line(
            f"{host} {new.id} {new.state} priority {new.priority}"
            + (f" ({new.reason})" if new.reason else "")
        )
    return 0


async def _log(args: argparse.Namespace, session: AgentSession, info: RequestInfo) -> int:
    """The output as text, cleaned (newlines and tabs kept: each character is cleaned on
    its own, so a chunk's edge cannot split what :func:`clean` would have caught); with
    ``--json`` one exact JSON object per chunk."""
    offset = 0
    while True:
        chunk = await session.call("requests.log", LogQuery(id=info.id, offset=offset))
        if chunk.data:
            if args.json:
                sys.stdout.write(json.dumps(msgspec.to_builtins(chunk)) + "\n")
            else:
                sys.stdout.write(clean(chunk.data, keep_newlines=True))
            sys.stdout.flush()
        offset = chunk.next_offset
        if chunk.data and chunk.next_offset > chunk.offset:
            continue  # more may be waiting right now
        if not (args.follow and chunk.running):
            return 0
        await asyncio.sleep(0.5)
