"""The App's R: a host held down (its login refused) is tried again when the operator asks,
and only then."""

from __future__ import annotations

import asyncio

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.backoff import ceiling
from llmaos_tui.fleet.link import AuthRefused
from tests.helpers import wait_for
from tests.test_reconnect import FailingLink


async def test_r_retries_a_host_whose_login_was_refused() -> None:
    link = FailingLink(AuthRefused("SSH login refused: Permission denied"))
    app = LlmaosApp([link], cursor_blink=False)
    async with app.run_test(size=(120, 30)) as pilot:
        host = app.fleet.hosts["fails"]
        await wait_for(lambda: "press R to retry" in host.reason, 20, "the host held down")
        # A quiet window, the only way to see that nothing happens: longer than the
        # longest first wait of the App's backoff, in which an unheld host is tried again.
        await asyncio.sleep(ceiling(1) + 0.5)
        assert len(link.opens) == 1  # held: not tried again by itself
        await pilot.press("R")
        await wait_for(lambda: len(link.opens) == 2, 20, "the retry")
        await wait_for(lambda: "press R to retry" in host.reason, 20, "held again")
        await asyncio.sleep(ceiling(2) + 0.5)  # as above, after a second failure
        assert len(link.opens) == 2
