"""Small helpers the console tests share."""

from __future__ import annotations

import asyncio
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
        await asyncio.sleep(0.05)  # poll interval


CLEAR_GAIN = 0.05
"""A hog move whose predicted gain is at least this (in the plan's own window) must be
planned; below it the plan may or may not move, but every move it makes must gain."""


async def hogs_busy(host: Any, pids: set[int], timeout: float = 60.0) -> None:
    """Wait until the ``hogs`` fixture's processes are in ``host``'s table as units a plan
    counts (a tenth of a core or more, on their core) and a few samples are in. No wait
    for an idle core: a busy machine is what the assertions are made against."""
    await wait_for(
        lambda: all((q := host.procs.get(pid)) is not None and q.cpu > 10 and q.core is not None
                    for pid in pids)
        and len(host.history) > 5,
        timeout, "the hogs in the process table",
    )  # fmt: skip


def _beta(loads: dict[str, tuple[str, float, float]]) -> float:
    from llmaos_tui.balance import beta_of

    return beta_of(loads.values())


def move_gain(slots: Any, src: str, dst: str, load: float) -> float:
    """How much beta falls, by the planner's own model, when ``load`` goes from slot
    ``src`` to slot ``dst`` of ``slots`` (a plan's slots: the window it was made in)."""
    loads = {s.id: (s.domain, s.capacity, s.load) for s in slots}
    before = _beta(loads)
    d, c, x = loads[src]
    loads[src] = (d, c, max(0.0, x - load))
    d, c, x = loads[dst]
    loads[dst] = (d, c, x + load)
    return before - _beta(loads)


def best_hog_move(slots: Any, src: str, hog_loads: list[float]) -> tuple[str, float]:
    """The destination and gain of the best single move of one hog (of ``hog_loads``) off
    slot ``src``, in the window of ``slots``."""
    domain = next(s.domain for s in slots if s.id == src)
    best = ("", float("-inf"))
    for s in slots:
        if s.id == src or s.domain != domain:
            continue
        for load in hog_loads:
            g = move_gain(slots, src, s.id, load)
            if g > best[1]:
                best = (s.id, g)
    return best


def beta_and_counterfactual(
    host: Any, moved: dict[int, tuple[int, int]]
) -> tuple[float, float, dict[int, float]]:
    """Beta of ``host``'s latest sample, and beta of the same sample with each moved
    process's load (from the same table) put back on its old core: what the window would
    show had the moves not been made. ``moved``: pid -> (old core, new core). Returns
    both and the moved processes' loads."""
    s = host.sample
    assert s is not None
    loads = {f"cpu{i}": (host.name, 1.0, x) for i, x in enumerate(s.cpu)}
    now = _beta(loads)
    seen: dict[int, float] = {}
    for pid, (old, new) in moved.items():
        q = host.procs.get(pid)
        load = min(1.0, q.cpu / 100.0) if q is not None else 0.0
        seen[pid] = load
        d, c, x = loads[f"cpu{new}"]
        loads[f"cpu{new}"] = (d, c, max(0.0, x - load))
        d, c, x = loads[f"cpu{old}"]
        loads[f"cpu{old}"] = (d, c, x + load)
    return now, _beta(loads), seen


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
