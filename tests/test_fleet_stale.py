"""Stale hosts among live ones: one sweep for every watcher on the loop (watcher.py).

Real agents over real pipes: the local agent streams a sample a second, the scripted
one says hello and then nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.state import FleetState, HostStatus
from llmaos_tui.fleet.watcher import Backoff, HostWatcher
from tests.helpers import scripted, wait_for


async def test_a_silent_host_turns_stale_while_a_live_one_stays_up(agent_home: Path) -> None:
    fleet = FleetState()
    live, silent = fleet.add("live"), fleet.add("silent")
    watchers = [
        HostWatcher(live, LocalLink("live"), lambda h: None, backoff=Backoff(0.2, 1.0)),
        HostWatcher(
            silent,
            scripted("silent", name="silent"),
            lambda h: None,
            backoff=Backoff(0.2, 1.0),
            stale_after=0.6,
        ),
    ]
    tasks = [asyncio.ensure_future(w.run()) for w in watchers]
    try:
        await wait_for(lambda: live.status is HostStatus.UP, timeout=60, what="live host up")
        await wait_for(lambda: silent.status is HostStatus.STALE, timeout=10, what="stale")
        assert "no sample for" in silent.reason
        # The live host keeps sending: it stays up past several of the silent one's limits
        # (its own limit is 2.5 samples, so a starved machine's slow sample is allowed).
        seq = live.sample.seq if live.sample is not None else 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert live.status is HostStatus.UP, live.reason
            await asyncio.sleep(0.1)
        assert live.sample is not None and live.sample.seq > seq
        assert silent.status is HostStatus.STALE
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
    # Nothing of the watchers is left running on the loop once they are gone.
    await asyncio.sleep(0)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in others if "_StaleSweep" in repr(t.get_coro())]
