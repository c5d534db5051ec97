"""Pilot tests of the requests screen in daily use: ages keep counting, Enter opens the
log of the cursor's request, every field of the new-request form has its label.

The screen is shown over a fleet state filled by hand (no agent): what is tested is what
the screen draws from it and what its keys ask the app for.
"""

from __future__ import annotations

from typing import Any

import msgspec
from textual.app import App
from textual.widgets import Input, Label

from llmaos_agent.protocol import RequestInfo
from llmaos_tui.fleet.state import FleetState
from llmaos_tui.screens.requests import OpenLog, RequestsScreen, SubmitScreen
from llmaos_tui.widgets.synced_table import SyncedTable
from tests.helpers import wait_for

NOW = 1_800_000_000.0


def request(rid: str, state: str, **kw: object) -> RequestInfo:
    fields: dict[str, object] = {
        "id": rid, "name": f"job-{rid}", "argv": ["python", "job.py"], "shell": False,
        "priority": 0, "cpus": 1, "gpus": 0, "share_gpu": False, "mem": 0, "state": state,
        "seq": int(rid[-1]), "submitted": NOW - 100.0,
    }  # fmt: skip
    fields.update(kw)
    return msgspec.convert(fields, RequestInfo)


class QueueApp(App[None]):
    """The requests screen over one host with a running and a queued request; the log
    requests it posts are kept."""

    def __init__(self) -> None:
        super().__init__()
        self.fleet = FleetState()
        host = self.fleet.add("gpu-a")
        host.requests = {
            "r-1": request("r-1", "running", started=NOW - 30.0, reason="cores 0"),
            "r-2": request("r-2", "queued", reason="waiting for 2 GPUs"),
        }
        host.requests_version = 1
        self.now = NOW
        self.logs: list[tuple[str, str]] = []
        self.screen_ = RequestsScreen(self.fleet, None)
        self.screen_.clock = lambda: self.now

    def on_mount(self) -> None:
        self.push_screen(self.screen_)

    def on_open_log(self, msg: OpenLog) -> None:
        self.logs.append((msg.host, msg.rid))


def cells(table: SyncedTable) -> dict[str, list[str]]:
    return {
        k: [c.plain if hasattr(c, "plain") else str(c) for c in table.get_row(k)]
        for k in table.keys
    }


async def test_ages_keep_counting_and_only_the_ages_are_redrawn() -> None:
    app = QueueApp()
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.screen_
        table = screen.query_one(SyncedTable)
        await wait_for(lambda: table.row_count == 2, what="the two requests drawn")
        age = [c.key for c in table.cols].index("AGE")
        before = cells(table)
        assert [before[k][age] for k in ("gpu-a/r-1", "gpu-a/r-2")] == ["30s", "100s"]
        await pilot.press("down")
        touched: list[str] = []
        update = table.update_cell

        def spy(row: Any, col: Any, value: Any, **kw: Any) -> None:
            touched.append(str(col))
            update(row, col, value, **kw)

        table.update_cell = spy  # type: ignore[method-assign,assignment]
        app.now = NOW + 15.0  # time passes; the queue does not change
        await wait_for(
            lambda: cells(table)["gpu-a/r-1"][age] == "45s", 5, "the running age counted on"
        )
        await wait_for(lambda: cells(table)["gpu-a/r-2"][age] == "115s", 5, "the queued age")
        after = cells(table)
        for k in before:  # every other cell as it was
            assert after[k][:age] + after[k][age + 1 :] == before[k][:age] + before[k][age + 1 :]
        assert set(touched) == {"AGE"}, touched
        assert table.selected_key == "gpu-a/r-2"  # the cursor stayed on its request
        assert app.fleet.hosts["gpu-a"].requests_version == 1


async def test_enter_opens_the_log_of_the_cursor_request() -> None:
    app = QueueApp()
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen_.query_one(SyncedTable)
        await wait_for(lambda: table.row_count == 2 and table.has_focus, what="the table")
        await pilot.press("down", "enter")
        await wait_for(lambda: bool(app.logs), 5, "a log asked for")
        assert app.logs == [("gpu-a", "r-2")]
        await pilot.press("up", "l")
        await wait_for(lambda: len(app.logs) == 2, 5, "the second log asked for")
        assert app.logs[1] == ("gpu-a", "r-1")


class FormApp(App[None]):
    def on_mount(self) -> None:
        self.push_screen(SubmitScreen("gpu-a"))


async def test_every_form_input_has_its_label_above_it() -> None:
    app = FormApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SubmitScreen)
        words = {"command": "Command", "priority": "Priority", "cpus": "Cores",
                 "gpus": "GPUs", "mem": "Memory", "name": "Name"}  # fmt: skip
        inputs = list(screen.query(Input))
        assert {i.id for i in inputs} == set(words)
        for i in inputs:
            i.value = "12"  # a value hides a placeholder: the label must still say it
        await pilot.pause()
        for i in inputs:
            label = screen.query_one(f"#{i.id}-label", Label)
            text = str(label.render())
            assert text.startswith(words[str(i.id)]), (i.id, text)
            lr, ir = label.region, i.region
            assert lr.width > 0 and lr.height == 1, (i.id, lr)
            assert lr.bottom == ir.y, (i.id, lr, ir)  # right above its input
            assert ir.x <= lr.x < ir.right, (i.id, lr, ir)


async def test_a_bad_number_is_named_as_its_label() -> None:
    app = FormApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SubmitScreen)
        screen.query_one("#command", Input).value = "sleep 1"
        screen.query_one("#cpus", Input).value = "two"
        screen.query_one("#cpus", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert str(screen.query_one("#error").render()) == "cores: a whole number"
        assert app.screen is screen  # nothing sent, the form stays
