"""Stale hosts among live ones: one sweep for every watcher on the loop (watcher.py).

Real agents over real pipes: the local agent streams a sample a second, the scripted
one says hello and then nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from llmaos_tui.fleet.link import Link, Transport
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
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


class _Probes(Link):
    """A link whose transports note each keep-alive switch the watcher makes."""

    def __init__(self, inner: Link, calls: list[tuple[bool, float]]) -> None:
        super().__init__(inner.name)
        self.inner, self.calls = inner, calls

    async def open(self) -> Transport:
        t = await self.inner.open()
        t.keepalive = lambda on, stale_after=0.0: self.calls.append((on, stale_after))  # type: ignore[method-assign]
        return t


async def test_probes_are_off_while_samples_come_and_on_while_the_host_is_silent() -> None:
    # Samples show the link alive; a silent host needs the transport's probes to find out
    # whether the link is dead (an SSH link's keep-alives), and needs them again each time.
    calls: list[tuple[bool, float]] = []
    host = FleetState().add("pauses")
    link = _Probes(scripted("pauses", name="pauses"), calls)
    watcher = HostWatcher(host, link, lambda h: None, stale_after=0.6)
    task = asyncio.ensure_future(watcher.run())
    try:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "up")
        assert calls[0] == (False, 0.6), "off from the start, told the stale limit"
        # Each pause of 1.5 s turns it stale (probes on), each sample up again (off).
        await wait_for(lambda: len(calls) >= 5, 30, "two silences and two returns")
        assert calls[:5] == [(False, 0.6), (True, 0.6), (False, 0.6), (True, 0.6), (False, 0.6)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    n = len(calls)
    await asyncio.sleep(1.0)
    assert len(calls) == n, "nothing is switched on a session that has ended"


async def test_one_hosts_failing_check_neither_stops_the_others_nor_goes_unsaid() -> None:
    fleet = FleetState()
    bad, good = fleet.add("bad"), fleet.add("good")

    def notify(h: HostState) -> None:
        if h is bad and h.status is HostStatus.STALE:
            raise RuntimeError("a view that breaks on this host")

    watchers = [
        HostWatcher(h, scripted("silent", name=h.name), notify, stale_after=0.6)
        for h in (bad, good)
    ]
    tasks = [asyncio.ensure_future(w.run()) for w in watchers]
    try:
        await wait_for(lambda: good.status is HostStatus.STALE, 30, "the good host stale")
        await wait_for(
            lambda: any("a view that breaks" in w for w in bad.warnings), 10, "the warning"
        )
        assert bad.status is HostStatus.STALE  # set before its notify raised
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
