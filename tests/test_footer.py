"""The footer at 80x24 and 120x40: the main keys are on it as drawn, htop's F1, F10
and F3 do what they do in htop, and the process table's sort column always carries the
arrow; a screen's footer leaves out the key that opened it."""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.screens.containers import ContainersScreen
from llmaos_tui.screens.fleet import FleetScreen
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.keys import KeysScreen
from llmaos_tui.screens.requests import RequestsScreen
from llmaos_tui.widgets.filter_bar import FilterBar
from llmaos_tui.widgets.host_table import HostTable
from llmaos_tui.widgets.key_footer import KeyFooter
from llmaos_tui.widgets.process_table import COLUMNS, ProcessTable
from tests.helpers import RECORDING, wait_for

SIZES = [(80, 24), (120, 40)]
HOST_KEYS = ["? Help", "q Quit", "f9 Kill", "r Requests", "/ Filter"]
FLEET_KEYS = ["? Help", "q Quit", "r Requests", "/ Filter"]


def app_of(*names: str) -> LlmaosApp:
    return LlmaosApp([ReplayLink(RECORDING, name=n) for n in names], cursor_blink=False)


def bottom_line(app: App[Any]) -> str:
    """The footer's line as the terminal shows it."""
    strips = app.screen._compositor.render_strips()
    return "".join(seg.text for seg in strips[-1])


async def _up(app: LlmaosApp, pilot: object) -> None:
    await wait_for(
        lambda: all(h.status is HostStatus.UP for h in app.fleet.hosts.values()), what="hosts up"
    )
    await pilot.pause(0.1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", SIZES)
async def test_host_screen_footer_shows_the_main_keys(size: tuple[int, int]) -> None:
    app = app_of("rec")
    async with app.run_test(size=size) as pilot:
        await _up(app, pilot)
        assert isinstance(app.screen, HostScreen)
        await wait_for(lambda: "Help" in bottom_line(app), what="the footer drawn")
        line = bottom_line(app)
        for key in HOST_KEYS:
            assert key in line, (key, line)


@pytest.mark.parametrize("size", SIZES)
async def test_fleet_screen_footer_shows_the_main_keys(size: tuple[int, int]) -> None:
    app = app_of("a", "b")
    async with app.run_test(size=size) as pilot:
        await _up(app, pilot)
        assert isinstance(app.screen, FleetScreen)
        await wait_for(lambda: "Help" in bottom_line(app), what="the footer drawn")
        line = bottom_line(app)
        for key in FLEET_KEYS:
            assert key in line, (key, line)


async def test_the_fleet_footer_under_one_host_is_built_when_shown() -> None:
    # One host: its screen opens over the fleet screen, whose footer is not built while it
    # is covered (start-up work for nothing), and has its keys once Esc shows it.
    app = app_of("rec")
    async with app.run_test(size=(120, 40)) as pilot:
        await _up(app, pilot)
        assert isinstance(app.screen, HostScreen)
        await wait_for(lambda: "Help" in bottom_line(app), what="the host footer drawn")
        fleet = app.screen_stack[-2]
        assert isinstance(fleet, FleetScreen)
        assert not fleet.query_one(KeyFooter).children
        await pilot.press("escape")
        await wait_for(lambda: app.screen_stack[-1] is fleet, what="the fleet screen shown")
        await wait_for(lambda: "Help" in bottom_line(app), what="the fleet footer drawn")
        line = bottom_line(app)
        for key in FLEET_KEYS:
            assert key in line, (key, line)


@pytest.mark.parametrize("size", SIZES)
async def test_a_screen_footer_leaves_out_the_key_that_opened_it(size: tuple[int, int]) -> None:
    app = app_of("rec")
    async with app.run_test(size=size) as pilot:
        await _up(app, pilot)
        await pilot.press("r")
        await wait_for(lambda: isinstance(app.screen, RequestsScreen), what="requests shown")
        await wait_for(lambda: "Filter" in bottom_line(app), what="the requests footer drawn")
        line = bottom_line(app)
        assert "Requests" not in line, line
        for key in ["? Help", "q Quit", "/ Filter", "esc Back"]:
            assert key in line, (key, line)
        await pilot.press("escape", "c")
        await wait_for(lambda: isinstance(app.screen, ContainersScreen), what="containers shown")
        await wait_for(lambda: "Filter" in bottom_line(app), what="the containers footer drawn")
        line = bottom_line(app)
        assert "Containers" not in line, line
        assert "r Requests" in line, line  # another screen's opener stays
        first = app.screen
        await pilot.press("c")  # the key still works there: the screen opened afresh
        await wait_for(
            lambda: isinstance(app.screen, ContainersScreen) and app.screen is not first,
            what="containers reopened",
        )


@pytest.mark.parametrize("size", SIZES)
async def test_f1_opens_help_and_f10_quits(size: tuple[int, int]) -> None:
    app = app_of("rec")
    async with app.run_test(size=size) as pilot:
        await _up(app, pilot)
        await pilot.press("f1")
        assert isinstance(app.screen, KeysScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, HostScreen)
        await pilot.press("f10")
        await wait_for(lambda: not app.is_running, what="the app quit")


@pytest.mark.parametrize("size", SIZES)
async def test_f3_opens_the_filter_on_the_host_and_fleet_screens(size: tuple[int, int]) -> None:
    app = app_of("left", "right")
    async with app.run_test(size=size) as pilot:
        await _up(app, pilot)
        bar = app.screen.query_one(FilterBar)
        assert not bar.active
        await pilot.press("f3")
        assert bar.active
        await pilot.press(*"right", "enter")
        assert app.screen.query_one(HostTable).shown_names == ["right"]
        app.open_host("right")
        await pilot.pause()
        bar = app.screen.query_one(FilterBar)
        await pilot.press("f3")
        assert bar.active
        await pilot.press("escape", "f1")  # closed again; F1 still opens the help
        assert isinstance(app.screen, KeysScreen)


async def test_the_help_fits_an_80_column_terminal() -> None:
    app = app_of("rec")
    async with app.run_test(size=(80, 24)) as pilot:
        await _up(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, KeysScreen)
        await pilot.pause()
        box = app.screen.query_one("KeysScreen > Vertical").region
        assert box.x >= 0 and box.right <= 80, box


async def test_f3_does_nothing_where_there_is_no_filter() -> None:
    app = app_of("rec")
    async with app.run_test(size=(80, 24)) as pilot:
        await _up(app, pilot)
        await pilot.press("f1")
        await pilot.press("f3")  # the keys dialog has no filter: no error, nothing opened
        assert isinstance(app.screen, KeysScreen)
        assert app.is_running


@pytest.mark.parametrize("size", SIZES)
async def test_the_sort_column_is_always_marked(size: tuple[int, int]) -> None:
    app = app_of("rec")
    async with app.run_test(size=size) as pilot:
        await _up(app, pilot)
        table = app.screen.query_one(ProcessTable)
        for c in COLUMNS:
            for reverse in (False, True):
                table.sort_by(c.key, reverse=reverse)
                await pilot.pause()
                arrow = "▼" if reverse else "▲"
                header = bottom_header(app, table)
                assert f"{c.label}{arrow}" in header, (c.key, header)
                assert "COMMAND" in header  # COMMAND stays at 80 columns


def bottom_header(app: App[Any], table: ProcessTable) -> str:
    """The process table's header line as drawn."""
    y = table.region.y
    strips = app.screen._compositor.render_strips()
    return "".join(seg.text for seg in strips[y])
