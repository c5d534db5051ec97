"""Snapshot tests: the fleet and host screens in both bundled themes, from a recording.

The recording (tests/data/recorded_stream.ndjson) is a real agent's stream, so the
screens show what an operator would see; nothing in it depends on this machine.
Regenerate after an intended change with ``pytest tests/test_snapshots.py
--snapshot-update`` and look at the SVGs before committing them.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from llmaos_tui.app import HostChanged, LlmaosApp
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.screens.fleet import FleetScreen
from llmaos_tui.screens.host import HostScreen
from tests.helpers import RECORDING, wait_for

SIZE = (130, 40)
THEMES = ["llmaos-dark", "llmaos-light"]


def _app(theme: str, *names: str) -> LlmaosApp:
    links = [ReplayLink(RECORDING, name=n) for n in names]
    return LlmaosApp(links, theme=theme, cursor_blink=False)


async def _played(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, LlmaosApp)
    hosts = list(app.fleet.hosts.values())
    await wait_for(
        lambda: all(h.status is HostStatus.UP and h.procs and len(h.history) > 3 for h in hosts),
        what="the recording played",
    )
    # The fleet β history grows once a second: stop the clock and give it a fixed
    # length, so the header's sparkline does not depend on how fast this machine is.
    app.ticker.pause()
    app.fleet.beta_history.clear()
    for _ in range(3):
        app.fleet.tick()
    app.post_message(HostChanged(hosts[0].name))
    await pilot.pause(0.5)  # past the coalescing of host updates (250 ms on the fleet)


@pytest.mark.parametrize("theme", THEMES)
def test_fleet_screen(snap_compare: object, theme: str) -> None:
    app = _app(theme, "gpu-a", "gpu-b")

    async def before(pilot: Pilot[None]) -> None:
        await _played(pilot)
        assert isinstance(pilot.app.screen, FleetScreen)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]


@pytest.mark.parametrize("theme", THEMES)
def test_host_screen(snap_compare: object, theme: str) -> None:
    app = _app(theme, "gpu-a")

    async def before(pilot: Pilot[None]) -> None:
        await _played(pilot)
        assert isinstance(pilot.app.screen, HostScreen)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]


@pytest.mark.parametrize("theme", THEMES)
def test_fleet_heat_map(snap_compare: object, theme: str) -> None:
    app = _app(theme, "gpu-a", "gpu-b", "gpu-c")

    async def before(pilot: Pilot[None]) -> None:
        await _played(pilot)
        assert isinstance(pilot.app.screen, FleetScreen)
        await pilot.press("h")
        await pilot.pause(0.1)
        assert pilot.app.screen.heatmap_shown

    assert snap_compare(app, terminal_size=SIZE, run_before=before)  # type: ignore[operator]
