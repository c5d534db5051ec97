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

Slurm clusters named in the hosts file (``[slurm.NAME]``, see
:mod:`llmaos_tui.fleet.inventory`) are listed beside the agents' queues (text: a table
per cluster; ``--json``: ``slurm``), and a job id ``slurm:NAME:JOBID`` makes prio, hold,
release, top, cancel and log act on that job through Slurm (:mod:`llmaos_tui.slurm`);
``submit --slurm NAME`` submits with ``sbatch``. Each change goes through the same
audited path as the agents' (:func:`llmaos_tui.ops.changes.change`: refused and recorded
under ``--read-only``, Slurm's refusals recorded and shown in its words).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
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
from llmaos_tui.fleet.inventory import InventoryError, default_hosts_path, load_slurm_clusters
from llmaos_tui.fleet.link import Link, LinkDown
from llmaos_tui.fleet.oneshot import connected
from llmaos_tui.fleet.session import AgentSession, CallError
from llmaos_tui.ops.audit import AuditLog, identity_of
from llmaos_tui.ops.changes import ReadOnlyConsole, change
from llmaos_tui.slurm import (
    LocalRunner,
    SlurmClient,
    SlurmJob,
    SlurmRefused,
    SshRunner,
    SubmitSpec,
    is_slurm_id,
    parse_slurm_id,
)
from llmaos_tui.slurm.jobs import BadSlurmId
from llmaos_tui.slurm.runner import Runner


def _err(msg: str) -> None:
    print(clean(f"llmaos-tui: {msg}"), file=sys.stderr)


def _line(text: str) -> None:
    """One line of text output (it holds a host's text)."""
    print(clean(text))


def _json(obj: Any) -> str:
    return json.dumps(msgspec.to_builtins(obj), indent=2)


async def run_request_command(args: argparse.Namespace, links: list[Link]) -> int:
    try:
        clusters = slurm_clusters(args)
    except InventoryError as exc:
        _err(str(exc))
        return 2
    try:
        return await _run(args, links, clusters)
    finally:
        for c in clusters:
            await c.runner.close()


async def _run(args: argparse.Namespace, links: list[Link], clusters: list[SlurmClient]) -> int:
    if getattr(args, "id", None) is not None and is_slurm_id(args.id):
        return await _on_slurm_job(args, clusters)
    if args.cmd == "submit" and getattr(args, "slurm", None):
        return await _submit_slurm(args, clusters)
    if not links and not (args.cmd == "requests" and clusters):
        _err("no host to act on")
        return 2
    try:
        if args.cmd == "requests":
            return await _list(args, links, clusters)
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


async def _list(args: argparse.Namespace, links: list[Link], clusters: list[SlurmClient]) -> int:
    states: list[RequestState] = [] if args.all else ["queued", "held", "running"]
    slurm = asyncio.ensure_future(_slurm_lists(clusters, finished=args.all))

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
    jobs = await slurm
    now = time.time()
    failed = [(h, r) for h, r in results if isinstance(r, str)]
    failed += [(f"slurm:{c.name} ({c.runner.where})", r) for c, r in jobs if isinstance(r, str)]
    if args.json:
        out = {
            "hosts": {
                h: (msgspec.to_builtins(r.requests) if isinstance(r, RequestList) else {"error": r})
                for h, r in results
            },
            # Each host reached: whether its agent's request queue works, and why not.
            "queues": {h: queues[h] for h, _ in results if h in queues},
            "slurm": _slurm_json(jobs, now),
        }
        print(json.dumps(out, indent=2))
    else:
        _tables(results, queues, jobs, now)
    for h, why in failed:
        _err(f"{h}: {why}")
    return 1 if failed else 0


def _tables(
    results: list[tuple[str, RequestList | str]],
    queues: dict[str, dict[str, Any]],
    jobs: list[tuple[SlurmClient, list[SlurmJob] | str]],
    now: float,
) -> None:
    """The agents' requests as one table, then each Slurm cluster's jobs."""
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
    for c, listed in jobs:
        if not isinstance(listed, str):
            _slurm_table(c, listed, now)


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


# --------------------------------------------------------------------------- Slurm


def slurm_clusters(args: argparse.Namespace) -> list[SlurmClient]:
    """The hosts file's ``[slurm.NAME]`` clusters, each with a runner on its host (this
    machine for ``host = "local"``, else that host's SSH connection, opened when first
    used); raises InventoryError for a bad file."""
    path: Path | None = getattr(args, "hosts_file", None)
    if path is not None and not path.is_file():
        return []  # the fleet's own reading of the file says what is wrong with it
    specs, hosts = load_slurm_clusters(path or default_hosts_path())
    out = []
    for spec in specs:
        runner: Runner
        if spec.local:
            runner = LocalRunner()
        else:
            from llmaos_tui.fleet.ssh import SshOptions  # noqa: PLC0415 - asyncssh is slow

            options = SshOptions()
            if getattr(args, "known_hosts", None):
                options.known_hosts = args.known_hosts
            runner = SshRunner(hosts[spec.host], options)
        out.append(SlurmClient(spec.name, runner))
    return out


async def _slurm_lists(
    clusters: list[SlurmClient], *, finished: bool
) -> list[tuple[SlurmClient, list[SlurmJob] | str]]:
    async def one(c: SlurmClient) -> tuple[SlurmClient, list[SlurmJob] | str]:
        try:
            return c, await c.jobs(finished=finished)
        except (SlurmRefused, LinkDown, OSError, asyncio.TimeoutError) as exc:
            return c, str(exc) or type(exc).__name__

    return list(await asyncio.gather(*(one(c) for c in clusters)))


SLURM_ORDER = {"running": 0, "queued": 1, "held": 2}


def _slurm_json(jobs: list[tuple[SlurmClient, list[SlurmJob] | str]], now: float) -> dict[str, Any]:
    """Each cluster: the host its commands run on, and its jobs or why not."""
    out: dict[str, Any] = {}
    for c, listed in jobs:
        entry: dict[str, Any] = {"host": c.runner.where}
        if isinstance(listed, str):
            entry["error"] = listed
        else:
            entry["jobs"] = [j.to_dict(now) for j in listed]
            entry["truncated"] = c.truncated
        out[c.name] = entry
    return out


def _slurm_table(c: SlurmClient, jobs: list[SlurmJob], now: float) -> None:
    """A cluster's jobs: running, then waiting by priority, held, then the finished."""
    jobs = sorted(jobs, key=lambda j: (SLURM_ORDER.get(j.state, 3), -j.priority, j.job_id))
    print()
    _line(f"SLURM {c.name} (on {c.runner.where}): {len(jobs)} jobs"
          + (" (more not shown)" if c.truncated else ""))  # fmt: skip
    print(f"{'ID':<22} {'USER':<10} {'STATE':<9} {'PRIO':>10} {'CPUS':>4} {'GPUS':>4} "
          f"{'NODES':>5} {'AGE':>6}  {'NAME':<20} WHERE / WHY")  # fmt: skip
    for j in jobs:
        print(_slurm_row(j, now))


def _slurm_row(j: SlurmJob, now: float) -> str:
    """One job as a line: each text field cleaned, then cut to its width."""
    return (
        f"{clean(j.id)[:22]:<22} {clean(j.user)[:10]:<10} {j.state:<9} {j.priority:>10} "
        f"{j.cpus:>4} {j.gpus:>4} {j.nodes:>5} {_age(j.age(now)):>6}  "
        f"{clean(j.name)[:20]:<20} {clean(j.why())[:60]}"
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _cluster(clusters: list[SlurmClient], name: str) -> SlurmClient | None:
    found = [c for c in clusters if c.name == name]
    if not found:
        known = ", ".join(c.name for c in clusters) or "none in the hosts file"
        _err(f"no Slurm cluster {name!r} (clusters: {known})")
        return None
    return found[0]


async def _slurm_change(
    args: argparse.Namespace,
    c: SlurmClient,
    method: str,
    target: str,
    act: Any,
    before: str = "",
) -> Any:
    """``act()`` through the console's change path: refused and audited in read-only
    mode, the audit checked first (fails closed), Slurm's refusal or an unreachable host
    recorded as the result, a timeout as unknown (:mod:`llmaos_tui.slurm.audited`), else
    the job's new state as ``after``."""
    from llmaos_tui.slurm.audited import slurm_change  # noqa: PLC0415

    runner = c.runner
    # A command that timed out is audited as unknown; its message says it may have acted.
    return await slurm_change(
        c, method, target, act, audit=AuditLog(identity_for=lambda _host: runner.login),
        read_only=args.read_only, before=before,
    )  # fmt: skip


async def _on_slurm_job(args: argparse.Namespace, clusters: list[SlurmClient]) -> int:
    """prio/hold/release/top/cancel/log on ``slurm:CLUSTER:JOBID``, through Slurm."""
    try:
        name, job_id = parse_slurm_id(args.id)
    except BadSlurmId as exc:
        _err(str(exc))
        return 2
    c = _cluster(clusters, name)
    if c is None:
        return 2
    where = f"slurm:{c.name} ({c.runner.where})"
    try:
        if args.cmd == "log":
            return await _slurm_log(args, c, job_id)
        job = await c.job(job_id)
        target = f"request {job.id}"
        before = job.describe()
        acts = {"hold": c.hold, "release": c.release, "top": c.top, "cancel": c.cancel}
        if args.cmd == "prio":
            result = await _slurm_change(
                args, c, "requests.prio", target, lambda: c.prio(job_id, args.priority), before
            )
            new, how, note = result.job, result.how, result.note
        else:
            new = await _slurm_change(
                args, c, f"requests.{args.cmd}", target, lambda: acts[args.cmd](job_id), before
            )
            how, note = "", ""
    except ValueError as exc:
        _err(f"{args.cmd}: {exc}")
        return 2
    except (SlurmRefused, ReadOnlyConsole, LinkDown, OSError) as exc:
        _err(f"{where}: {exc}")
        return 1
    if args.json:
        extra = {"how": how, "note": note} if args.cmd == "prio" else {}
        print(json.dumps({"cluster": c.name, **new.to_dict(time.time()), **extra}, indent=2))
    else:
        said = ""
        if how == "Nice":
            said = f" (by Nice {new.nice}: Slurm refused {note})"
        elif how:
            said = " (by Slurm's Priority)"
        why = new.why()
        _line(f"{where} {new.id} {new.state} priority {new.priority}"
              + (f" ({why})" if why else "") + said)  # fmt: skip
    return 0


async def _slurm_log(args: argparse.Namespace, c: SlurmClient, job_id: str) -> int:
    """The end of the job's output file (cleaned; newlines and tabs kept)."""
    if getattr(args, "follow", False):
        _err("log -f: a Slurm job's output is shown once, not followed")
    tail = await c.log(job_id)
    if args.json:
        print(json.dumps({"path": tail.path, "data": tail.data, "running": tail.running,
                          "truncated": tail.truncated}))  # fmt: skip
    else:
        sys.stdout.write(clean(tail.data, keep_newlines=True))
        sys.stdout.flush()
    return 0


async def _submit_slurm(args: argparse.Namespace, clusters: list[SlurmClient]) -> int:
    c = _cluster(clusters, args.slurm)
    if c is None:
        return 2
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        _err("submit: give the command after --")
        return 2
    spec = SubmitSpec(
        argv=[" ".join(argv)] if args.shell else argv,
        shell=args.shell,
        name=args.name,
        cpus=args.cpus,
        gpus=args.gpus,
        mem=args.mem,
        cwd=args.cwd,
        # The console's priority runs the other way from Slurm's Nice (higher first).
        nice=-args.priority,
    )
    where = f"slurm:{c.name} ({c.runner.where})"
    try:
        job: SlurmJob = await _slurm_change(
            args, c, "requests.submit", f"slurm job: {' '.join(argv)[:200]}",
            lambda: c.submit(spec),
        )  # fmt: skip
    except ValueError as exc:
        _err(f"submit: {exc}")
        return 2
    except (SlurmRefused, ReadOnlyConsole, LinkDown, OSError) as exc:
        _err(f"{where}: {exc}")
        return 1
    if args.json:
        print(json.dumps({"cluster": c.name, **job.to_dict(time.time())}, indent=2))
    else:
        _line(f"{where} {job.id} {job.state} priority {job.priority}")
    return 0
