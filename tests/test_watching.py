"""fleet.watching: the CLI's one way to wait for a fleet, against real links."""

from __future__ import annotations

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
