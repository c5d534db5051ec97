"""A watcher asked to stop stops, even when Python's ``asyncio.wait_for`` loses the cancel.

On Python 3.11 and before, a task cancelled just as the call its ``wait_for`` awaits
finishes gets that call's result, not the CancelledError. A watcher that went on from
there would log in and watch the host under a caller waiting for it to end (a test's
teardown that hung for its whole timeout, once in a few runs on a busy machine).
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from llmaos_tui.fleet.link import Link, Transport
from llmaos_tui.fleet.state import FleetState, HostStatus
from llmaos_tui.fleet.watcher import Backoff, HostWatcher
from tests.helpers import RECORDING


class _HelloThenCancel(Transport):
    """Answers the first read with the recorded hello at once, and has the watcher's task
    cancelled in the same turn of the loop: the cancel lands after the read is done and
    before ``wait_for`` has handed its result on."""

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task
        self.hello = next(ln for ln in RECORDING.read_bytes().splitlines() if ln.strip())

    async def readline(self) -> bytes:
        if self.hello:
            asyncio.get_running_loop().call_soon(self.task.cancel)
            hello, self.hello = self.hello, b""
            return hello + b"\n"
        await asyncio.Event().wait()  # nothing more: an agent that says only hello
        return b""

    def write(self, data: bytes) -> None:
        pass

    async def close(self) -> None:
        pass


class _Link(Link):
    def __init__(self) -> None:
        super().__init__("h")
        self.task: asyncio.Task[None] | None = None
        self.opens = 0

    async def open(self) -> Transport:
        self.opens += 1
        assert self.task is not None
        return _HelloThenCancel(self.task)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 has no Task.cancelling()")
async def test_a_cancel_lost_by_wait_for_as_the_hello_came_still_stops_the_watcher() -> None:
    host = FleetState().add("h")
    link = _Link()
    watcher = HostWatcher(host, link, lambda h: None, backoff=Backoff(0.2, 0.5))
    task = asyncio.ensure_future(watcher.run())
    link.task = task
    done, _ = await asyncio.wait({task}, timeout=15)
    assert task in done, "the watcher went on after it was cancelled"
    assert task.cancelled()
    assert link.opens == 1, "no second attempt after the cancel"
    assert host.status is not HostStatus.UP
