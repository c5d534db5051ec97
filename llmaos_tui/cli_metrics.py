"""``llmaos-tui metrics`` and ``snapshot --format prometheus``: the fleet's figures for
Prometheus, headless (:mod:`llmaos_tui.exporter` does the work).

``metrics`` watches the fleet over the links the console uses (one SSH connection per
host, nothing opened on any host) and serves ``/metrics`` until Ctrl-C or SIGTERM, on
loopback unless ``--public`` says otherwise (and then says so on stderr at start).
``snapshot --format prometheus`` waits for each host as ``snapshot --json`` does and prints
one scrape, for node_exporter's textfile collector.

Also the console's ``--metrics ADDR`` / ``--metrics-public`` options
(:func:`add_console_options`, :func:`console_listen`), so the TUI serves the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmaos_agent.safetext import clean
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.fleet.watching import Watching

if TYPE_CHECKING:
    # The exporter (prometheus_client with it) only where metrics are served: the console's
    # options are parsed at every start, and its start-up is measured.
    from llmaos_tui.exporter import Listen

PROG = "llmaos-tui metrics"
DEFAULT_LISTEN = "127.0.0.1:9464"
"""Loopback, on the port OpenTelemetry's Prometheus exporter took in Prometheus's list of
default ports."""


def add_arguments(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``metrics`` subcommand, on ``cli.parser()``'s subparsers."""
    p = sub.add_parser(
        "metrics", help="serve the fleet's figures for Prometheus (headless, until Ctrl-C)"
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to serve /metrics (default {DEFAULT_LISTEN}; [::1]:PORT for IPv6)",
    )
    p.add_argument(
        "--public",
        action="store_true",
        help="allow an address that is not loopback (0.0.0.0, an interface's): anyone who "
        "reaches it reads the fleet's figures",
    )
    common(p)


def add_snapshot_format(snap: argparse.ArgumentParser) -> None:
    """``--format json|prometheus`` on ``snapshot``, beside its ``--json`` (which stays,
    meaning ``--format json``); one of the two is required."""
    snap.add_argument(
        "--format",
        choices=("json", "prometheus"),
        default=None,
        help="json (as --json), or prometheus: one scrape in the text exposition format, "
        "for node_exporter's textfile collector",
    )


def add_console_options(p: argparse.ArgumentParser) -> None:
    """The console's ``--metrics ADDR`` and ``--metrics-public``."""
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        default=None,
        help="also serve the fleet's figures for Prometheus there (e.g. 127.0.0.1:9464)",
    )
    p.add_argument(
        "--metrics-public",
        action="store_true",
        help="allow a --metrics address that is not loopback",
    )


def console_listen(args: argparse.Namespace) -> Listen | None:
    """Where the console serves metrics (None: it does not). A bad address is refused
    before the console starts: said on stderr, exit status 2 (SystemExit)."""
    text = getattr(args, "metrics", None)
    if text is None:
        return None
    from llmaos_tui.exporter import ListenError, parse_listen  # noqa: PLC0415

    try:
        return parse_listen(text, public=bool(getattr(args, "metrics_public", False)))
    except ListenError as exc:
        print(clean(f"llmaos-tui: --metrics {exc}"), file=sys.stderr)
        raise SystemExit(2) from None


def _settled(h: HostState) -> bool:
    # As snapshot --json waits: a sample and a process table (the agent's own cost comes
    # from its row there until the agent's own report, one sample in ten, is in), or down.
    if h.status is HostStatus.DOWN:
        return True
    return h.status is HostStatus.UP and h.sample is not None and bool(h.procs)


async def snapshot_prometheus(links: list[Link], timeout: float) -> str:
    """Watch every host until each is up with a sample (or down): one scrape's text."""
    from llmaos_tui.exporter import scrape_text  # noqa: PLC0415

    async with Watching(links) as w:
        await w.until(_settled, timeout)
        return scrape_text(w.fleet)


async def run_snapshot(args: argparse.Namespace, links: list[Link]) -> int:
    sys.stdout.write(await snapshot_prometheus(links, args.timeout))
    return 0


async def run(args: argparse.Namespace, links: list[Link]) -> int:
    """``metrics``: serve until Ctrl-C or SIGTERM; 2 for a bad address, 1 when it cannot
    bind."""
    from llmaos_tui.exporter import (  # noqa: PLC0415
        ListenError,
        MetricsServer,
        parse_listen,
        public_warning,
    )

    try:
        listen = parse_listen(args.listen, public=args.public, flag="--public")
    except ListenError as exc:
        print(clean(f"{PROG}: {exc}"), file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        async with Watching(links) as w:
            server = MetricsServer(w.fleet, listen, loop)
            try:
                server.start()
            except OSError as exc:
                why = exc.strerror or str(exc)
                print(clean(f"{PROG}: cannot listen on {listen}: {why}"), file=sys.stderr)
                return 1
            try:
                warning = public_warning(listen)
                if warning is not None:
                    print(f"{PROG}: {warning}", file=sys.stderr)
                hosts = len(w.fleet.hosts)
                print(
                    clean(f"{PROG}: serving {hosts} host{'s' * (hosts != 1)} on {server.url}"),
                    file=sys.stderr,
                    flush=True,
                )
                await stop.wait()
            finally:
                await server.aclose()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    return 0
