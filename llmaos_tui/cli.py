"""``llmaos-tui``: the console, and (later) its headless subcommands.

Kept free of Textual at import time: the UI is imported only when it is run,
so headless commands start fast and work without a terminal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmaos_tui import __version__
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.replay import ReplayLink


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmaos-tui",
        description="One terminal console for the hosts that run your LLM workloads.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--theme", help="theme name (llmaos-dark, llmaos-light, textual-dark, ...)")
    p.add_argument("--read-only", action="store_true", help="refuse every change")
    p.add_argument(
        "--replay",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="add a host played back from a recorded agent stream (demos)",
    )
    p.add_argument("--no-local", action="store_true", help="leave this machine out of the fleet")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    links: list[Link] = []
    if not args.no_local:
        links.append(LocalLink())
    for spec in args.replay:
        name, sep, path = spec.rpartition("=")
        links.append(ReplayLink(Path(path), name=name if sep else None, delay=1.0))
    if not links:
        print("llmaos-tui: no hosts (drop --no-local or add --replay FILE)", file=sys.stderr)
        return 2
    names = [link.name for link in links]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        print(
            f"llmaos-tui: two hosts named {', '.join(dupes)}; name them NAME=FILE", file=sys.stderr
        )
        return 2

    # Textual is imported only to run the UI (headless commands must not pay for it).
    from llmaos_tui.app import LlmaosApp  # noqa: PLC0415
    from llmaos_tui.theming import ConfigError, load_keymap  # noqa: PLC0415

    try:
        keymap = load_keymap()
    except ConfigError as exc:
        print(f"llmaos-tui: {exc}", file=sys.stderr)
        return 2
    app = LlmaosApp(links, theme=args.theme, read_only=args.read_only, keymap=keymap)
    app.run()
    return 0
