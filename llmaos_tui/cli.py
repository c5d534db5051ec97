"""``llmaos-tui``: the console, and its headless subcommands (``snapshot --json``).

Kept free of Textual at import time: the UI is imported only when it is run,
so headless commands start fast and work without a terminal.

Text output names what hosts report: every formatter of the subcommands cleans it with
:func:`llmaos_agent.safetext.clean` (``--json`` is exact, and ``json.dumps`` escapes
control and non-ASCII characters itself). Numbers given on the command line are checked
against the wire's bounds by the argparse types below, so a bad value is a usage error
(exit 2), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

from llmaos_agent.protocol import MAX_CORES, MAX_GPUS
from llmaos_agent.safetext import clean
from llmaos_tui import __version__
from llmaos_tui.cli_args import NO_HOSTS, bounded, priority, python_version, seconds, size
from llmaos_tui.fleet.inventory import InventoryError, build_inventory, default_hosts_path
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.fleet.watching import Watching

REQUEST_COMMANDS = ("submit", "requests", "prio", "hold", "release", "top", "cancel", "log")

MAX_CONCURRENT_CONNECTS = 16
"""Below OpenSSH's default MaxStartups (10:30:100 starts refusing at 10 unauthenticated
per server); ours are spread over many servers, so 16 at once is safe for each."""


APPENDED = ("hosts", "replay")
"""Options that add up: given before the subcommand and after it, both count."""


def _common(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    """The fleet options, on the top parser (``top``) and on each subcommand's.

    A subcommand's parser fills a namespace of its own that argparse then copies over the
    top one's, so its defaults would erase what was given before the subcommand
    (``llmaos-tui --no-local -H a snapshot``): there its defaults are SUPPRESS, and its
    repeatable options go to ``sub_*`` names that :func:`parse_args` adds to the top's.
    """

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    def dest(name: str) -> str:
        return name if top else f"sub_{name}"

    p.add_argument(
        "-H",
        "--host",
        action="append",
        default=default([]),
        metavar="[USER@]HOST[:PORT]",
        dest=dest("hosts"),
        help="this host: a name from the hosts file (with its settings), or a host to reach "
        "over SSH (ranges: gpu[1-8]); repeatable",
    )
    p.add_argument(
        "--hosts-file",
        type=Path,
        default=default(None),
        help="hosts file (default: hosts.toml in the config directory, when present)",
    )
    p.add_argument(
        "--known-hosts",
        type=Path,
        default=default(None),
        help="known_hosts file (default ~/.ssh/known_hosts)",
    )
    p.add_argument(
        "--no-local",
        action="store_true",
        default=default(False),
        help="leave this machine out of the fleet",
    )
    p.add_argument(
        "--agent-wheels",
        type=Path,
        default=default(None),
        metavar="DIR",
        help="psutil wheels for macOS/Windows hosts from DIR only, never the network "
        "(filled by `llmaos-tui agent-wheels`)",
    )
    p.add_argument(
        "--replay",
        action="append",
        default=default([]),
        metavar="[NAME=]FILE",
        dest=dest("replay"),
        help="add a host played back from a recorded agent stream (demos)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, the fleet options counted wherever they stand."""
    plain = _plain_console(sys.argv[1:] if argv is None else argv)
    if plain is not None:
        return plain
    p = parser()
    args = p.parse_args(argv)
    if args.cmd == "snapshot":
        if args.json and args.format not in (None, "json"):
            p.error("snapshot: --json and --format prometheus are two formats; give one")
        if not args.json and args.format is None:
            p.error("snapshot: say --json or --format json|prometheus")
    for name in APPENDED:
        setattr(args, name, [*getattr(args, name), *vars(args).pop(f"sub_{name}", [])])
    return args


class _NotPlain(Exception):
    pass


class _TopParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotPlain(message)


def _plain_console(argv: list[str]) -> argparse.Namespace | None:
    """The console's own command line (no subcommand, no --help or --version), parsed
    without the subcommands' parsers; None for anything else, which the full parser reads
    (and words any error of). Building those parsers imports their modules, asyncssh
    among them: a fifth of a second of the console's start-up that it does not need
    (docs/BENCHMARKS.md, start-up). The options are the top parser's own, so a command
    line this takes means what the full parser would make of it."""
    p = _TopParser(prog="llmaos-tui", add_help=False)
    _top_options(p)
    try:
        args, rest = p.parse_known_args(argv)
    except _NotPlain:
        return None
    if rest:  # a subcommand, --help, --version or a mistake: the full parser's
        return None
    args.cmd = None
    return args


def _top_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--theme", help="theme name (llmaos-dark, llmaos-light, textual-dark, ...)")
    p.add_argument("--read-only", action="store_true", help="refuse every change")
    from llmaos_tui.cli_metrics import add_console_options  # noqa: PLC0415 (stdlib only)

    add_console_options(p)
    _common(p, top=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmaos-tui",
        description="One terminal console for the hosts that run your LLM workloads.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _top_options(p)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    snap = sub.add_parser("snapshot", help="print one snapshot of the fleet and exit")
    snap.add_argument("--json", action="store_true", help="as JSON (or --format)")
    from llmaos_tui.cli_metrics import add_arguments as add_metrics  # noqa: PLC0415
    from llmaos_tui.cli_metrics import add_snapshot_format  # noqa: PLC0415

    add_snapshot_format(snap)
    snap.add_argument(
        "--timeout", type=seconds, default=15.0, help="seconds to wait for hosts (default 15)"
    )
    _common(snap)

    sb = sub.add_parser("submit", help="queue a request on a host (-H, default this machine)")
    sb.add_argument("--priority", type=priority, default=0, help="-1000..1000, higher first (0)")
    sb.add_argument(
        "--cpus", type=bounded(0, MAX_CORES, "cores"), default=1,
        help="cores it needs (pinned there; 1)",
    )  # fmt: skip
    sb.add_argument(
        "--gpus", type=bounded(0, MAX_GPUS, "GPUs"), default=0,
        help="GPUs it needs (exclusive; 0)",
    )  # fmt: skip
    sb.add_argument("--share-gpu", action="store_true", help="may share its GPUs")
    sb.add_argument("--mem", type=size, default=0, help="memory it needs free, e.g. 8G")
    sb.add_argument("--name", default="", help="a name to show (default: the program)")
    sb.add_argument("--cwd", help="working directory on the host")
    sb.add_argument("--shell", action="store_true", help="run COMMAND through the host's shell")
    sb.add_argument("--json", action="store_true", help="print the request as JSON")
    sb.add_argument(
        "--slurm", metavar="CLUSTER",
        help="submit with sbatch to this Slurm cluster of the hosts file ([slurm.CLUSTER])",
    )  # fmt: skip
    sb.add_argument("argv", nargs="+", metavar="-- COMMAND", help="what to run")
    _common(sb)

    rq = sub.add_parser("requests", help="list the request queues")
    rq.add_argument("--json", action="store_true", help="as JSON")
    rq.add_argument("--all", action="store_true", help="finished requests too")
    _common(rq)

    for name, helptext in (
        ("prio", "give a request a new priority"),
        ("hold", "hold a queued request"),
        ("release", "release a held request"),
        ("top", "move a waiting request to the head of its queue"),
        ("cancel", "cancel a request (SIGTERM, then SIGKILL after a grace period)"),
        ("log", "print a request's output"),
    ):
        op = sub.add_parser(name, help=helptext)
        op.add_argument("id", metavar="ID")
        if name == "prio":
            op.add_argument("priority", type=priority, metavar="P")
        if name == "log":
            op.add_argument("-f", "--follow", action="store_true", help="follow while it runs")
        op.add_argument("--json", action="store_true", help="print the result as JSON")
        _common(op)
    aw = sub.add_parser(
        "agent-wheels",
        help="download psutil wheels for hosts' Pythons into a directory (air-gapped fleets)",
    )
    aw.add_argument(
        "--platform", action="append", required=True, metavar="TAG",
        help="a host's platform tag: win_amd64, macosx_11_0_arm64, manylinux_2_17_x86_64 "
        "(repeatable; the console's message for such a host names it)",
    )  # fmt: skip
    aw.add_argument("--python", type=python_version, required=True, help="its Python, e.g. 3.12")
    aw.add_argument("--implementation", default="cp", help="cp (CPython, default) or pp")
    aw.add_argument(
        "--dir", type=Path, default=None, help="where to put them (default: the console's cache)"
    )
    from llmaos_tui.cli_containers import add_parsers  # noqa: PLC0415 (after the others)
    from llmaos_tui.cli_plan import add_parser as add_plan  # noqa: PLC0415

    add_parsers(sub, _common)
    add_plan(sub, _common)
    add_metrics(sub, _common)
    return p


FLEET, NAMED, LOCAL_ONLY = "fleet", "named", "local"
"""What a command acts on: the fleet (this machine unless --no-local, the -H hosts, the
hosts file's others), the -H hosts alone, or this machine alone."""


def scope_of(args: argparse.Namespace) -> str:
    """The console watches the fleet; a subcommand given -H acts on those hosts alone;
    without -H the request commands act on this machine (with --no-local, on the hosts
    file's), the others on the fleet."""
    if args.cmd is None:
        return FLEET
    if args.hosts:
        return NAMED
    return LOCAL_ONLY if args.cmd in REQUEST_COMMANDS and not args.no_local else FLEET


def build_links(
    args: argparse.Namespace, scope: str = FLEET, *, start_local: bool = False
) -> list[Link]:
    """The hosts ``scope`` takes of what the arguments name (replays always); raises
    InventoryError on a bad target or file. ``start_local``: this machine's agent is
    started at once (the console's: its daemon warms while the UI is imported); the
    caller runs the links or ends it with :func:`discard_started`."""
    links: list[Link] = []
    if scope != NAMED and not args.no_local:
        local = LocalLink()
        if start_local:
            local.start()
        links.append(local)
    try:
        return _other_links(args, scope, links)
    except BaseException:
        discard_started(links)
        raise


def discard_started(links: list[Link]) -> None:
    """End the agents :func:`build_links` started that no link took over."""
    for link in links:
        if isinstance(link, LocalLink):
            link.discard_early()


def _other_links(args: argparse.Namespace, scope: str, links: list[Link]) -> list[Link]:
    specs = (
        []
        if scope == LOCAL_ONLY
        else build_inventory(args.hosts, args.hosts_file, named_only=scope == NAMED)
    )
    if specs:
        # Only with SSH hosts: asyncssh (with its crypto) is a fifth of a second to import,
        # and this machine's own console does not need it to draw its first screen.
        from llmaos_tui.fleet.deploy import WheelSource  # noqa: PLC0415
        from llmaos_tui.fleet.ssh import SshLink, SshOptions  # noqa: PLC0415

        options = SshOptions()
        if args.known_hosts:
            options.known_hosts = args.known_hosts
        if args.agent_wheels is not None:
            if not args.agent_wheels.is_dir():
                raise InventoryError(f"--agent-wheels {args.agent_wheels}: no such directory")
            options.wheels = WheelSource(offline=args.agent_wheels)
        limiter = asyncio.Semaphore(MAX_CONCURRENT_CONNECTS)
        links += [SshLink(s, options=options, limiter=limiter) for s in specs]
    for spec in args.replay:
        name, sep, path = spec.rpartition("=")
        links.append(ReplayLink(Path(path), name=name if sep else None, delay=1.0))
    names = [link.name for link in links]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InventoryError(f"two hosts named {', '.join(dupes)}; give them distinct names")
    return links


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cmd == "move":  # its own hosts: the two it names, SSH or this machine
        from llmaos_tui.cli_containers import run_move  # noqa: PLC0415

        return run_move(args)
    if args.cmd == "agent-wheels":
        return run_agent_wheels(args)
    try:
        links = build_links(args, scope_of(args), start_local=args.cmd is None)
    except InventoryError as exc:
        print(clean(f"llmaos-tui: {exc}"), file=sys.stderr)
        return 2
    # A plan from a snapshot needs no host; the request commands may act on the hosts
    # file's Slurm clusters alone (cli_requests says "no host" when there is nothing).
    if not links and args.cmd != "plan" and args.cmd not in REQUEST_COMMANDS:
        print(f"llmaos-tui: {NO_HOSTS}", file=sys.stderr)
        return 2
    if args.cmd == "snapshot":
        if args.format == "prometheus":
            from llmaos_tui.cli_metrics import run_snapshot  # noqa: PLC0415

            return asyncio.run(run_snapshot(args, links))
        print(json.dumps(asyncio.run(snapshot(links, args.timeout)), indent=2))
        return 0
    runner = _headless(args.cmd)
    if runner is not None:
        return asyncio.run(runner(args, links))
    try:
        return run_app(args, links)
    finally:
        discard_started(links)  # the console ended before its local link opened


Runner = Callable[[argparse.Namespace, list[Link]], Coroutine[Any, Any, int]]


def _headless(cmd: str | None) -> Runner | None:
    """The subcommands that act on the -H hosts (this machine when none is named); each
    module is imported only when its command runs."""
    if cmd in REQUEST_COMMANDS:
        from llmaos_tui.cli_requests import run_request_command  # noqa: PLC0415

        return run_request_command
    if cmd == "plan":
        from llmaos_tui.cli_plan import run_plan  # noqa: PLC0415

        return run_plan
    if cmd == "containers":
        from llmaos_tui.cli_containers import run_containers  # noqa: PLC0415

        return run_containers
    if cmd == "metrics":
        from llmaos_tui.cli_metrics import run as run_metrics  # noqa: PLC0415

        return run_metrics
    return None


def run_app(args: argparse.Namespace, links: list[Link]) -> int:
    # Textual is imported only to run the UI (headless commands must not pay for it).
    from llmaos_tui.app import LlmaosApp  # noqa: PLC0415
    from llmaos_tui.cli_metrics import console_listen  # noqa: PLC0415
    from llmaos_tui.screens.keys import load_keys  # noqa: PLC0415

    metrics = console_listen(args)  # a bad address: exit 2 before the UI starts
    keys = load_keys(LlmaosApp)
    app = LlmaosApp(
        links, theme=args.theme, read_only=args.read_only, keymap=keys.keymap,
        settings_path=LlmaosApp.default_settings_path(),
        metrics=metrics,
    )  # fmt: skip
    hosts_file: Path | None = getattr(args, "hosts_file", None)
    # No hosts file, no Slurm clusters: their modules (11 ms) not imported. A path that is
    # there but no file still goes to the reading, which says what is wrong with it.
    if hosts_file.is_file() if hosts_file is not None else default_hosts_path().exists():
        from llmaos_tui.cli_requests import slurm_clusters  # noqa: PLC0415

        try:  # the hosts file's [slurm.NAME] clusters, on the requests screen
            app.slurm_clients = slurm_clusters(args)
        except InventoryError as exc:
            print(clean(f"llmaos-tui: {exc}"), file=sys.stderr)
            return 2
    for problem in keys.problems:  # on the terminal after the console, and in it at start
        print(clean(f"llmaos-tui: {problem}"), file=sys.stderr)
    app.config_errors += [clean(p) for p in keys.problems]
    quiet_collector()
    app.run()
    return 0


def run_agent_wheels(args: argparse.Namespace) -> int:
    """``agent-wheels``: a psutil wheel for each ``--platform`` and ``--python`` into
    ``--dir`` (the console's cache by default), by pip download; copy the directory to an
    air-gapped console and name it with ``--agent-wheels DIR``."""
    from llmaos_tui.fleet import wheels  # noqa: PLC0415 (this command's alone)

    dest = args.dir or wheels.default_cache()
    try:
        targets = [wheels.target_of_tag(p, args.python, args.implementation) for p in args.platform]
        found = asyncio.run(wheels.fill(dest, targets))
    except wheels.WheelError as exc:
        print(clean(f"llmaos-tui agent-wheels: {exc}"), file=sys.stderr)
        return 2
    for t, path in zip(targets, found, strict=True):
        print(clean(f"{t.key}: {path}"))
    return 0


GC_YOUNG = 100_000
"""Allocations between young-generation collections while the console runs (Python's
default is 700)."""


def quiet_collector() -> None:
    """Fewer, shorter pauses of the cyclic garbage collector for the console's run.

    What start-up made lives as long as the console does: frozen, the collector no longer
    walks it. The young generation is collected every GC_YOUNG allocations instead of 700:
    a screen redrawn several times a second allocates much and keeps little. With 200 hosts
    on screen the collector's pauses were the sample-to-screen latency's tail: p99 about
    450 ms before, about 320 ms after, at the same CPU and memory (docs/BENCHMARKS.md)."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)


async def snapshot(links: list[Link], timeout: float) -> dict[str, Any]:
    """Watch every host until each is up with a sample (or down), then describe the fleet."""
    async with Watching(links) as w:
        await w.until(_settled, timeout)
    fleet = w.fleet
    return {
        "version": __version__,
        "time": time.time(),
        "beta_fleet": _round(fleet.beta()) if fleet.up_hosts() else None,
        "hosts": [_host_json(h) for h in fleet.hosts.values()],
    }


def _host_units(h: HostState) -> dict[str, Any]:
    """What a hosts-level plan sees of ``h`` beyond its loads, in the form ``plan --snapshot``
    reads: free memory and GPUs, and its running containers as units (pinned or not, their
    replica groups), so a what-if plans them as the live plan would."""
    if h.sample is None:
        return {}
    from llmaos_tui.ops.rebalance import container_unit, host_processor  # noqa: PLC0415

    proc = host_processor(h)
    running = [c for c in h.containers.values() if c.state == "running"]
    return {
        "mem_available": proc.mem_free,
        "gpus_free": proc.gpus_free,
        "containers": [
            {"id": c.id, "name": u.name, "cpu": u.load, "mem": u.mem, "gpus": u.gpus,
             "group": u.group, "pinned": u.pinned, "cost": u.cost}
            for c, u in ((c, container_unit(h, c)) for c in running)
        ],
    }  # fmt: skip


def _settled(h: HostState) -> bool:
    if h.status is HostStatus.DOWN:
        return True
    return h.status is HostStatus.UP and h.sample is not None and bool(h.procs)


def _round(v: float | None, n: int = 4) -> float | None:
    return None if v is None else round(v, n)


def _host_json(h: HostState) -> dict[str, Any]:
    s, hello = h.sample, h.hello
    return {
        **_host_units(h),
        "name": h.name,
        "target": h.target,
        "status": h.status.value if h.status is not HostStatus.UP or s else "connecting",
        "reason": h.reason or None,
        "os": hello.host.os if hello else None,
        "hostname": hello.host.hostname if hello else None,
        "cores": h.cores if hello else None,
        "cpu": _round(h.cpu),
        "mem": _round(h.mem),
        "gpu": _round(h.gpu),
        "beta_cpu": _round(h.beta_cpu),
        "beta_gpu": _round(h.beta_gpu),
        "core_loads": list(s.cpu) if s else [],
        "gpu_loads": h.gpu_loads if s else [],
        # The busy processes and the waiting requests: what `plan --snapshot` moves.
        "processes": [
            {
                "pid": p.pid,
                "name": p.name,
                "user": p.user,
                "cpu": round(p.cpu, 1),
                "core": p.core,
                "pinned": p.pid <= 1,
            }
            for p in h.procs.values()
            if p.cpu >= 1.0
        ],
        "process_count": len(h.procs),
        "requests": [
            {
                "id": r.id,
                "name": r.name,
                "state": r.state,
                "cpus": r.cpus,
                "gpus": r.gpus,
                "mem": r.mem,
                "priority": r.priority,
            }
            for r in h.requests.values()
            if r.state in ("queued", "running")
        ],
    }
