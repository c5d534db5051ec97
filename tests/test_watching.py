"""fleet.watching: the CLI's one way to wait for a fleet, against real links."""

from __future__ import annotations

import asyncio

import pytest

from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.fleet.watching import Watching


async def test_until_wakes_on_the_change_and_gives_up_at_the_timeout(agent_home: object) -> None:
    broken = LocalLink("broken", ["/bin/false"])  # an agent that exits at once: down
    async with Watching([LocalLink("local"), broken]) as w:
        up = await w.until(
            lambda h: (
                h.status is HostStatus.DOWN or (h.status is HostStatus.UP and h.sample is not None)
            ),
            60,
        )
        assert up, {n: (h.status, h.reason) for n, h in w.fleet.hosts.items()}
        assert w.fleet.hosts["local"].status is HostStatus.UP
        assert w.fleet.hosts["broken"].status is HostStatus.DOWN
        assert "exited with code 1" in w.fleet.hosts["broken"].reason
        assert not await w.until(lambda _h: False, 0.3)  # never holds: the timeout answers


async def test_reap_never_swallows_the_callers_own_cancel() -> None:
    # The old `with suppress(CancelledError): await reader` in a finally swallowed a cancel
    # that came during that await: the watcher then reconnected for ever, and a CLI or a
    # test that closed its Watching hung (seen once in CI under two busy loops).
    from llmaos_tui.fleet.link import reap

    started = asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            started.set()
            await asyncio.sleep(0.5)  # it takes a while to wind down, then ends
            raise

    async def caller() -> str:
        child = asyncio.ensure_future(slow_to_end())
        await asyncio.sleep(0)
        child.cancel()
        await reap(child)
        return "went on"  # what a swallowed cancel would reach

    task = asyncio.ensure_future(caller())
    await started.wait()
    task.cancel()  # arrives while the caller reaps its child
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_reap_cancels_what_outlives_the_timeout_and_drops_errors() -> None:
    from llmaos_tui.fleet.link import reap

    async def fails() -> None:
        raise RuntimeError("the child's own error, not the caller's")

    stuck = asyncio.ensure_future(asyncio.sleep(60))
    failed = asyncio.ensure_future(fails())
    await reap(stuck, failed, timeout=0.2)
    assert stuck.cancelled() and failed.done()


async def test_leaving_watching_ends_a_watcher_that_swallowed_a_cancel(agent_home: object) -> None:
    w = Watching([LocalLink("local")])
    async with w:
        swallowed = asyncio.Event()

        async def stubborn() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                swallowed.set()  # a bug that eats one cancel, then waits again
            await asyncio.sleep(60)

        w._tasks.append(asyncio.ensure_future(stubborn()))
        await asyncio.sleep(0)  # it runs up to its first wait
    assert swallowed.is_set() and all(t.done() for t in w._tasks)
