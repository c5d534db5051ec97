"""Settings kept between runs: a first console's choices (theme, sorts, filter, panels)
are what a second one starts with; a bad file is said at start and never stops it; a
read-only console writes nothing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from llmaos_tui import settings
from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.widgets.filter_bar import FilterBar
from llmaos_tui.widgets.host_table import HostTable
from llmaos_tui.widgets.process_table import ProcessTable
from tests.helpers import RECORDING, wait_for

SIZE = (120, 40)


def app_of(path: Path, *, read_only: bool = False) -> LlmaosApp:
    links = [ReplayLink(RECORDING, name=n) for n in ("left", "right")]
    return LlmaosApp(links, cursor_blink=False, settings_path=path, read_only=read_only)


async def _up(app: LlmaosApp) -> None:
    await wait_for(
        lambda: all(h.status is HostStatus.UP for h in app.fleet.hosts.values()), what="hosts up"
    )


def _saved(path: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


async def test_a_second_run_starts_with_the_first_runs_choices(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "settings.json"
    app = app_of(path)
    async with app.run_test(size=SIZE) as pilot:
        await _up(app)
        assert app.theme == "llmaos-dark"
        app.theme = "llmaos-light"
        await pilot.press("M", "slash", *"right", "enter")  # fleet: by memory, filtered
        app.open_host("right")
        await pilot.pause()
        await pilot.press("N", "2")  # processes by pid; the GPU panel hidden
        want = {
            "theme": "llmaos-light",
            "fleet_sort": "mem",
            "fleet_filter": "right",
            "host_sort": "pid",
            "host_panels": ["cores", "procs"],
        }
        await wait_for(lambda: all(_saved(path).get(k) == v for k, v in want.items()), what="saved")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]  # no temp file left

    again = app_of(path)
    async with again.run_test(size=SIZE) as pilot:
        await _up(again)
        await pilot.pause()
        assert again.theme == "llmaos-light"
        table = again.screen.query_one(HostTable)
        await wait_for(lambda: table.shown_names == ["right"], what="the filter applied")
        assert (table.sort_key, table.reverse) == ("mem", True)
        bar = again.screen.query_one(FilterBar)
        assert bar.active and bar.value == "right"  # the filter says it is there
        again.open_host("right")
        await wait_for(lambda: isinstance(again.screen, HostScreen) and again.screen.is_mounted)
        screen = again.screen
        assert isinstance(screen, HostScreen)
        await pilot.pause()
        procs = screen.query_one(ProcessTable)
        assert (procs.sort_key, procs.reverse) == ("pid", False)
        assert screen.shown_panels == {"cores", "procs"}
        assert screen.has_class("-no-gpus")


async def test_a_corrupt_file_is_reported_and_ignored(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    app = app_of(path)
    async with app.run_test(size=SIZE):
        await _up(app)
        assert app.theme == "llmaos-dark"
        assert any("settings.json: not valid JSON" in e for e in app.config_errors)


async def test_unknown_keys_and_bad_values_are_reported_the_rest_applied(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(
            {
                "theme": "llmaos-light",
                "colour": "red",
                "host_panels": ["cores", "disks"],
                "fleet_reverse": "yes",
                "fleet_sort": "name",
            }
        )
    )
    app = app_of(path)
    async with app.run_test(size=SIZE) as pilot:
        await _up(app)
        await pilot.pause()
        assert app.theme == "llmaos-light"
        errors = "\n".join(app.config_errors)
        assert "unknown setting 'colour'" in errors
        assert "host_panels must be a list" in errors
        assert "fleet_reverse must be true or false" in errors
        assert app.screen.query_one(HostTable).sort_key == "name"


async def test_an_unknown_saved_sort_column_is_said_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"fleet_sort": "disk", "host_sort": "colour"}))
    app = app_of(path)
    async with app.run_test(size=SIZE) as pilot:
        await _up(app)
        app.open_host("left")
        await wait_for(lambda: isinstance(app.screen, HostScreen) and app.screen.is_mounted)
        await pilot.pause()
        assert app.is_running
        assert app.screen.query_one(ProcessTable).sort_key == "cpu"  # the default


async def test_a_read_only_console_writes_no_settings(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"theme": "llmaos-light"}))
    before = path.read_text()
    app = app_of(path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await _up(app)
        assert app.theme == "llmaos-light"  # read
        app.theme = "llmaos-dark"
        await pilot.press("M")
        # Two ticks of the App's once-a-second save pass, seen through its own state.
        start = (
            app.fleet.hosts["left"].samples if hasattr(app.fleet.hosts["left"], "samples") else 0
        )
        await wait_for(lambda: app.settings.fleet_sort == "mem", what="the choice noted")
    assert path.read_text() == before
    del start


def test_save_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings.save(path, settings.Settings(theme="a", host_panels=("procs",)))
    settings.save(path, settings.Settings(theme="b"))
    assert json.loads(path.read_text()) == {"theme": "b"}
    assert settings.load(path) == (settings.Settings(theme="b"), [])
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]


async def test_a_screenshot_goes_to_a_folder_made_for_it_and_says_where(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "screenshots"
    links = [ReplayLink(RECORDING, name="left")]
    app = LlmaosApp(links, cursor_blink=False, screenshot_dir=folder)
    async with app.run_test(size=SIZE) as pilot:
        await _up(app)
        await pilot.press("ctrl+p", *"screenshot")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(lambda: folder.is_dir() and any(folder.iterdir()), what="the svg")
        (svg,) = folder.iterdir()
        assert svg.suffix == ".svg" and "left" in svg.read_text()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        await wait_for(
            lambda: any(str(svg) in n.message for n in app._notifications), what="the notice"
        )
