"""The console with Textual's Pilot: what an operator sees and can do with the keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.screens.fleet import FleetScreen
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.keys import KeysScreen
from llmaos_tui.widgets.core_bars import CoreBars
from llmaos_tui.widgets.host_header import HostHeader
from llmaos_tui.widgets.host_table import HostTable
from llmaos_tui.widgets.process_table import ProcessTable, matches
from tests.helpers import RECORDING, scripted, wait_for

SIZE = (140, 45)


def replay_app(*names: str, **kw: object) -> LlmaosApp:
    links = [ReplayLink(RECORDING, name=n) for n in names or ("rec",)]
    return LlmaosApp(links, cursor_blink=False, **kw)  # type: ignore[arg-type]


async def test_local_host_screen_shows_a_bar_per_core(agent_home: Path) -> None:
    app = LlmaosApp([LocalLink()], cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, HostScreen)  # one host: straight to it
        bars = app.screen.query_one(CoreBars)
        await wait_for(lambda: app.fleet.hosts["local"].sample is not None, what="a sample")
        await pilot.pause(0.2)
        assert bars.bar_count == os.cpu_count()
        text = bars.render().plain
        assert len([ln for ln in text.splitlines() if "%" in ln]) >= 1
        assert text.count("%") == os.cpu_count()
        await wait_for(lambda: os.getpid() in app.fleet.hosts["local"].procs, what="procs")
        await pilot.pause(0.2)
        assert os.getpid() in app.screen.query_one(ProcessTable).shown_pids


async def _ready(app: LlmaosApp, pilot: object, name: str = "rec") -> None:
    host = app.fleet.hosts[name]
    await wait_for(lambda: host.status is HostStatus.UP and len(host.procs) > 5, what="replay")
    await pilot.pause(0.2)  # type: ignore[attr-defined]


async def test_process_table_sorts_with_htop_keys() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        table = app.screen.query_one(ProcessTable)
        procs = app.fleet.hosts["rec"].procs

        def order(key: str) -> list[float]:
            return [float(getattr(procs[pid], key)) for pid in table.shown_pids]

        assert order("cpu") == sorted(order("cpu"), reverse=True)  # the default: CPU, top first
        await pilot.press("M")
        assert order("rss") == sorted(order("rss"), reverse=True)
        await pilot.press("I")
        assert order("rss") == sorted(order("rss"))
        await pilot.press("N")
        assert table.shown_pids == sorted(table.shown_pids)
        await pilot.press("P")
        assert order("cpu") == sorted(order("cpu"), reverse=True)
        assert len(table.shown_pids) == len(procs)


async def test_process_table_cursor_follows_its_process_across_resorts() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        table = app.screen.query_one(ProcessTable)
        await pilot.press("down", "down", "down")
        pid = table.shown_pids[table.cursor_row]
        await pilot.press("N")
        assert table.shown_pids[table.cursor_row] == pid


async def test_slash_filters_the_process_table_and_escape_clears() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await _ready(app, pilot)
        table = app.screen.query_one(ProcessTable)
        everything = len(table.shown_pids)
        await pilot.press("slash")
        assert app.screen.query_one(Input).has_focus
        await pilot.press(*"python")
        procs = app.fleet.hosts["rec"].procs
        shown = table.shown_pids
        assert 0 < len(shown) < everything
        assert all(matches(procs[pid], "python") for pid in shown)
        assert all(not matches(p, "python") for pid, p in procs.items() if pid not in shown)
        await pilot.press("escape")
        assert len(table.shown_pids) == everything
        assert isinstance(app.screen, HostScreen)  # the first Esc clears, it does not leave


async def test_fleet_screen_lists_hosts_and_enter_opens_one() -> None:
    app = replay_app("alpha", "beta")
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, FleetScreen)
        for n in ("alpha", "beta"):
            await _ready(app, pilot, n)
        table = app.screen.query_one(HostTable)
        assert table.row_count == 2
        row = [c.plain if hasattr(c, "plain") else str(c) for c in table.get_row("beta")]
        assert row[0] == "beta" and row[1] == "up" and row[2] == "Linux"
        assert row[3] == str(app.fleet.hosts["beta"].cores)
        await pilot.press("down", "enter")
        assert isinstance(app.screen, HostScreen) and app.screen.host.name == "beta"
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_a_dying_agent_turns_the_host_down_and_the_app_keeps_running() -> None:
    app = LlmaosApp([scripted("exit"), ReplayLink(RECORDING, name="rec")], cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        bad = app.fleet.hosts["scripted"]
        await wait_for(lambda: bad.status is HostStatus.DOWN, what="down")
        await pilot.pause(0.2)
        table = app.screen.query_one(HostTable)
        status = table.get_row("scripted")[1].plain
        assert status.startswith("down: the agent exited with code 7")
        await pilot.press("enter")  # open the down host: its header says why
        assert isinstance(app.screen, HostScreen)
        assert "exited with code 7" in app.screen.query_one(HostHeader).render().plain
        assert app.is_running


async def test_hosts_up_waits_for_the_hosts_news_not_a_clock() -> None:
    """What the start-up recovery waits on: every named host up, woken by the watchers'
    news; a host that goes down instead, or one the console does not know, runs it out."""
    app = LlmaosApp([scripted("exit"), ReplayLink(RECORDING, name="rec")], cursor_blink=False)
    async with app.run_test(size=SIZE):
        assert await app.hosts_up({"rec"}, 30.0)
        assert app.fleet.hosts["rec"].status is HostStatus.UP
        bad = app.fleet.hosts["scripted"]
        await wait_for(lambda: bad.status is HostStatus.DOWN, what="down")
        assert not await app.hosts_up({"rec", "scripted"}, 0.5)
        assert not await app.hosts_up({"nowhere"}, 0.2)


async def test_garbage_speaking_agent_is_down_with_reason() -> None:
    app = LlmaosApp([scripted("no-hello")], cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["scripted"]
        await wait_for(lambda: host.status is HostStatus.DOWN, what="down")
        await pilot.pause(0.2)
        header = app.screen.query_one(HostHeader).render().plain
        assert "down: the agent did not say hello" in header
        assert "Welcome to my shell" in header


async def test_question_mark_lists_the_keys_with_their_ids() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, KeysScreen)
        table = app.screen.query_one(DataTable)
        ids = {table.get_row_at(i)[2].plain for i in range(table.row_count)}
        assert {"app.quit", "host.filter", "procs.sort_cpu", "host.back"} <= ids
        await pilot.press("escape")
        assert isinstance(app.screen, HostScreen)


async def test_palette_finds_screens_and_actions() -> None:
    app = replay_app("alpha", "beta")
    async with app.run_test(size=SIZE) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for t in ("Fleet", "Keys", "Host: alpha", "Host: beta", "Theme: llmaos-light", "Quit"):
            assert t in titles
        await _ready(app, pilot, "beta")
        # The palette itself: type, pick, and the host opens.
        await pilot.press("ctrl+p")
        await pilot.press(*"Host: beta")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.2)
        screen = app.screen
        commands = {c.title: c for c in app.get_system_commands(screen)}
        assert isinstance(screen, HostScreen) and screen.host.name == "beta"
        assert "Filter processes" in commands
        commands["Sort processes by PID"].callback()
        table = app.screen.query_one(ProcessTable)
        assert table.sort_key == "pid" and table.shown_pids == sorted(table.shown_pids)


async def test_q_quits() -> None:
    app = replay_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
    assert app.return_code == 0


@pytest.mark.parametrize("theme", ["llmaos-dark", "llmaos-light"])
async def test_theme_option_selects_a_theme_file(theme: str) -> None:
    app = replay_app(theme=theme)
    async with app.run_test(size=SIZE):
        assert app.theme == theme


async def test_unknown_theme_falls_back_with_a_notice() -> None:
    app = replay_app(theme="no-such-theme")
    async with app.run_test(size=SIZE):
        assert app.theme == "llmaos-dark"
        assert any("no theme 'no-such-theme'" in e for e in app.config_errors)


async def test_keymap_remaps_a_binding_by_id() -> None:
    app = replay_app(keymap={"app.quit": "x"})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        assert app.is_running
        await pilot.press("x")
    assert app.return_code == 0
