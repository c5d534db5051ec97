"""Watching a fleet headless: its watchers running on the loop, and one way to wait until
every host is settled (what each command means by that), woken by the watchers' changes
rather than by polling. The CLI's snapshot, containers, move and plan commands use it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from types import TracebackType

from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.state import FleetState, HostState
from llmaos_tui.fleet.watcher import HostWatcher

RECHECK_S = 0.5
"""Longest wait between two looks even without a change (a host's status may move on a
timer, e.g. going stale)."""


class Watching:
    """``async with Watching(links) as w``: every link watched until the block ends."""

    def __init__(self, links: Sequence[Link]) -> None:
        self.fleet = FleetState()
        self._changed = asyncio.Event()
        self.watchers = [HostWatcher(self.fleet.add(x.name), x, self._on_change) for x in links]
        self.by_name = {w.state.name: w for w in self.watchers}
        self._tasks: list[asyncio.Task[None]] = []

    def _on_change(self, _host: HostState) -> None:
        self._changed.set()

    async def __aenter__(self) -> Watching:
        self._tasks = [asyncio.ensure_future(w.run()) for w in self.watchers]
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        # Cancelled again while any runs: one that swallowed a cancel must not hang the exit.
        while pending := [t for t in self._tasks if not t.done()]:
            for t in pending:
                t.cancel()
            await asyncio.wait(pending, timeout=5.0)
        for t in self._tasks:
            if not t.cancelled():
                t.exception()

    async def until(self, settled: Callable[[HostState], bool], timeout: float) -> bool:
        """Wait until ``settled`` holds for every host, or ``timeout`` seconds; whether it
        holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(settled(h) for h in self.fleet.hosts.values()):
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, RECHECK_S))
        return True
