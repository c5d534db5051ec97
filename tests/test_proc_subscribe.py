"""Per-process data only where it is looked at: ``procs.watch`` from the watcher and the
console, against the real local agent daemon.

What a user checks: a host's process rows appear when its host screen opens, are gone
(and no longer sent) once the fleet is back on top, and come back whole on reopening; a
reconnect keeps the choice.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.backoff import Backoff
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.fleet.watcher import HostWatcher
from llmaos_tui.fleet.watching import Watching
from llmaos_tui.screens.fleet import FleetScreen
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.intents import OpenPlan
from llmaos_tui.screens.plan import PlanScreen
from llmaos_tui.widgets.process_table import ProcessTable
from tests.helpers import wait_for

SIZE = (140, 45)
DEADLINE = 60.0  # a busy 2-core machine: the agent's process pass may take seconds


async def _samples_after(host: HostState, n: int) -> None:
    """Wait until ``n`` more samples have come (each a new ``t``)."""
    seen: list[float] = []

    def more() -> bool:
        s = host.sample
        if s is not None and (not seen or s.t != seen[-1]):
            seen.append(s.t)
        return len(seen) > n

    await wait_for(more, DEADLINE, what=f"{n} more samples")


async def _quiet_wire(w: HostWatcher) -> None:
    """The agent has stopped sending processes: three samples pass with none."""
    await wait_for(lambda: not w.state.procs, DEADLINE, what="the process table emptied")
    before = w.procs_samples
    await _samples_after(w.state, 3)
    assert w.procs_samples == before, "samples still carry processes after procs.watch off"
    assert not w.state.procs


async def test_watcher_turns_processes_off_and_on_and_keeps_it_across_a_reconnect(
    agent_home: Path,
) -> None:
    async with Watching([LocalLink("local")]) as watching:
        w = watching.by_name["local"]
        w.backoff = Backoff(0.2, 0.5)
        host = w.state
        await wait_for(lambda: os.getpid() in host.procs, DEADLINE, what="this test's process")
        assert w.procs_samples > 0  # on by default: the CLI's commands are unaffected

        w.want_procs(False)
        await _quiet_wire(w)

        w.want_procs(True)
        await wait_for(lambda: os.getpid() in host.procs, DEADLINE, what="the table again")
        assert len(host.procs) > 5  # a whole table, not only what changed since

        # A new connection starts with processes on: the watcher says off again.
        w.want_procs(False)
        await _quiet_wire(w)
        session = w.session
        assert session is not None
        await session.transport.close()
        await wait_for(
            lambda: w.session is not None and w.session is not session,
            DEADLINE,
            what="a reconnect",
        )
        await _quiet_wire(w)
        assert w.procs_wanted is False


async def _host_table(app: LlmaosApp) -> ProcessTable:
    await wait_for(
        lambda: isinstance(app.screen, HostScreen) and app.screen.is_mounted,
        DEADLINE,
        what="the host screen",
    )
    return app.screen.query_one(ProcessTable)


async def test_the_host_screen_subscribes_and_the_fleet_unsubscribes(agent_home: Path) -> None:
    app = LlmaosApp([LocalLink("local"), LocalLink("other")], cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, FleetScreen)
        local, other = app.by_name["local"], app.by_name["other"]
        await wait_for(
            lambda: all(
                w.state.status is HostStatus.UP and w.state.sample is not None
                for w in (local, other)
            ),
            DEADLINE,
            what="both hosts up",
        )
        # The fleet on top: neither host's processes are wanted, nor sent, nor held.
        assert not local.procs_wanted and not other.procs_wanted
        await _quiet_wire(local)
        await _quiet_wire(other)

        app.open_host("local")
        table = await _host_table(app)
        await wait_for(lambda: os.getpid() in table.shown_pids, DEADLINE, what="the rows")
        assert local.procs_wanted and not other.procs_wanted
        assert not other.state.procs  # only the host on screen is streamed

        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, FleetScreen), DEADLINE, what="the fleet")
        await _quiet_wire(local)

        app.open_host("local")
        table = await _host_table(app)
        await wait_for(lambda: os.getpid() in table.shown_pids, DEADLINE, what="rows again")
        assert len(table.shown_pids) == len(local.state.procs) > 5  # the full table


# Textual closes the first worker's coroutine unstarted: that is the case under test.
@pytest.mark.filterwarnings("ignore:coroutine 'PlanActions._plan_off_loop' was never awaited")
async def test_a_plan_asked_twice_leaves_no_table_streamed_once_closed(agent_home: Path) -> None:
    """A plan asked again before the first ran (its worker cancelled unstarted) must not
    keep every host's processes streamed after its screen is gone."""
    app = LlmaosApp([LocalLink("local"), LocalLink("other")], cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        local, other = app.by_name["local"], app.by_name["other"]
        await wait_for(
            lambda: all(w.state.status is HostStatus.UP for w in (local, other)),
            DEADLINE,
            what="both hosts up",
        )
        app.post_message(OpenPlan(None, "hosts"))
        app.post_message(OpenPlan(None, "hosts"))  # the first is cancelled, maybe unstarted
        await wait_for(lambda: isinstance(app.screen, PlanScreen), DEADLINE, what="the plan")
        assert local.procs_wanted and other.procs_wanted  # a plan reads every table
        await pilot.press("escape")
        await wait_for(lambda: isinstance(app.screen, FleetScreen), DEADLINE, what="the fleet")
        await wait_for(
            lambda: not local.procs_wanted and not other.procs_wanted,
            DEADLINE,
            what="no table streamed under the fleet screen",
        )
