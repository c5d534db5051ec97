"""Small helpers the console tests share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmaos_tui.fleet.local import LocalLink

DATA = Path(__file__).resolve().parent / "data"
RECORDING = DATA / "recorded_stream.ndjson"


def scripted(mode: str, *extra: str, name: str = "scripted") -> LocalLink:
    """A link to tests/data/scripted_agent.py in the given misbehaviour mode."""
    return LocalLink(name, [sys.executable, str(DATA / "scripted_agent.py"), mode, *extra])


async def wait_for(cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or cond}")
        await asyncio.sleep(0.05)


async def hogs_and_idle_core(host: Any, pids: set[int]) -> str:
    """Wait until the ``hogs`` fixture's processes show busy in ``host``'s table, then for
    another core with room for one of them (the test's own work comes and goes). Returns
    "" when there is one, else why not (another job fills the cores: nothing to gain).
    For a test that plans through the app; test_balance_apply checks once, since waiting
    longer lets other busy processes of the machine into its plan."""
    await wait_for(
        lambda: all((q := host.procs.get(pid)) is not None and q.cpu > 25 for pid in pids)
        and len(host.history) > 5,
        20, "the hogs busy",
    )  # fmt: skip

    def calm() -> bool:
        return host.sample is not None and min(host.sample.cpu[1:]) < 0.35

    with contextlib.suppress(AssertionError):
        await wait_for(calm, 15, "an idle core")
    if calm():
        return ""
    busy = host.sample.cpu[1:] if host.sample else []
    return f"the other cores are busy ({busy}): no idle core to move to"


async def review(app: Any, after: Any = None, timeout: float = 15.0) -> Any:
    """The plan review the app opens (planned off the loop, so it comes a moment after the
    key), other than ``after``, the review it replaces."""
    from llmaos_tui.screens.plan import PlanScreen

    await wait_for(
        lambda: isinstance(app.screen, PlanScreen) and app.screen is not after,
        timeout,
        "the plan's review",
    )
    return app.screen


def run_tui(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``llmaos-tui ARGS`` in a subprocess with ``home`` as HOME (its hosts file, its
    known_hosts, its state directory: audit log and move journal), as a user runs it."""
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_STATE_HOME": str(home / ".state")}  # fmt: skip
    env.pop("SSH_AUTH_SOCK", None)
    return subprocess.run(
        [sys.executable, "-m", "llmaos_tui", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def audit_of(home: Path) -> list[dict[str, Any]]:
    """The console's audit log entries under ``home`` (see :func:`run_tui`)."""
    path = home / ".state" / "llmaos-tui" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
