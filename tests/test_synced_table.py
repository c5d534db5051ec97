"""The synced table: an update applies only the difference (rows added, rows removed,
cells changed), keeps the cursor on its key and keeps the sort; the containers and
requests screens use it, fed from a fleet state set by hand (no agent)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets.data_table import ColumnKey, RowKey

from llmaos_agent.protocol import Container, RequestInfo
from llmaos_tui.fleet.state import FleetState
from llmaos_tui.screens.containers import ContainersScreen
from llmaos_tui.screens.requests import RequestsScreen
from llmaos_tui.widgets.synced_table import Col, Row, SyncedTable

COLS = (Col("name", "NAME"), Col("load", "LOAD", numeric=True), Col("note", "NOTE"))


def rows(loads: dict[str, float], note: str = "") -> list[Row]:
    return [
        Row(k, (k, Text(f"{v:.1f}", justify="right"), note), (k, v, note)) for k, v in loads.items()
    ]


class Calls:
    """Counts what a table is asked to do (the DataTable calls underneath)."""

    def __init__(self, table: SyncedTable) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []
        self.updated: list[tuple[str, str]] = []
        add, remove, update = table.add_row, table.remove_row, table.update_cell

        def add_row(*cells: Any, **kw: Any) -> Any:
            self.added.append(str(kw["key"]))
            return add(*cells, **kw)

        # The stand-ins keep DataTable's parameter names, so they type-check as it.
        def remove_row(row_key: RowKey | str) -> None:
            self.removed.append(str(row_key))
            remove(row_key)

        def update_cell(
            row_key: RowKey | str,
            column_key: ColumnKey | str,
            value: object,
            *,
            update_width: bool = False,
        ) -> None:
            self.updated.append((str(row_key), str(column_key)))
            update(row_key, column_key, value, update_width=update_width)

        table.add_row = add_row  # type: ignore[method-assign]
        table.remove_row = remove_row  # type: ignore[method-assign]
        table.update_cell = update_cell  # type: ignore[method-assign]

    def clear(self) -> None:
        self.added.clear()
        self.removed.clear()
        self.updated.clear()


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SyncedTable(COLS, id="t")


async def test_only_the_difference_is_applied() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(SyncedTable)
        calls = Calls(table)
        table.sync(rows({"a": 1.0, "b": 2.0, "c": 3.0}))
        assert table.keys == ["a", "b", "c"] and calls.added == ["a", "b", "c"]
        await pilot.press("down")
        assert table.selected_key == "b"
        calls.clear()

        table.sync(rows({"a": 1.0, "b": 2.5, "c": 3.0}))  # one field of one row
        assert calls.updated == [("b", "load")] and not calls.added and not calls.removed
        assert str(table.get_cell("b", "load")) == "2.5"
        assert table.selected_key == "b"
        calls.clear()

        table.sync(rows({"a": 1.0, "b": 2.5, "c": 3.0}))  # nothing changed: nothing done
        assert not (calls.updated or calls.added or calls.removed)

        # A row goes, one comes, the others move: the cursor stays on its key.
        table.sync(rows({"d": 0.5, "b": 2.5, "a": 1.0}))
        assert calls.removed == ["c"] and calls.added == ["d"] and not calls.updated
        assert table.keys == ["d", "b", "a"]
        assert table.selected_key == "b" and table.cursor_row == 1

        # A change of style alone is a change (Text's == would miss it).
        calls.clear()
        styled = [Row("d", ("d", Text("0.5", style="bold", justify="right"), ""))]
        table.sync(styled + rows({"b": 2.5, "a": 1.0}))
        assert calls.updated == [("d", "load")]


async def test_the_sort_is_kept_across_updates() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(SyncedTable)
        table.sync(rows({"a": 1.0, "b": 2.0, "c": 3.0}))
        table.sort_by("load")  # numeric: the biggest first
        assert table.sort_key == "load" and table.reverse
        assert table.keys == ["c", "b", "a"]
        assert "▼" in table.columns["load"].label.plain  # type: ignore[index]
        assert table.selected_key == "a" and table.cursor_row == 2  # the sort took it along
        await pilot.press("up")
        assert table.selected_key == "b"

        table.sync(rows({"a": 9.0, "b": 2.0, "c": 3.0, "e": 5.0}))
        assert table.keys == ["a", "e", "c", "b"]  # still by load, biggest first
        assert table.selected_key == "b" and table.cursor_row == 3

        table.sort_by("load")  # the same column again: the other way
        assert table.keys == ["b", "c", "e", "a"] and table.selected_key == "b"
        table.sort_by(None)  # the order the rows are given in
        assert table.keys == ["a", "b", "c", "e"]


# -------------------------------------------------------------- the screens


def box(cid: str, name: str, cpu: float = 0.5, state: str = "running") -> Container:
    return Container(
        id=cid * 12, name=name, image="nginx:1.27", image_id="sha256:1", state=state,  # type: ignore[arg-type]
        status="Up", created=0.0, cpu=cpu, mem=64 << 20, started=1_000.0,
    )  # fmt: skip


class ScreenApp(App[None]):
    def __init__(self, screen: Any) -> None:
        super().__init__()
        self._first = screen

    def on_mount(self) -> None:
        self.push_screen(self._first)


async def test_containers_screen_updates_only_the_changed_cell() -> None:
    fleet = FleetState()
    h = fleet.add("gpu-a")
    h.containers = {c.id: c for c in (box("a", "api"), box("b", "db"), box("c", "web"))}
    h.containers_version += 1
    screen = ContainersScreen(fleet, None)
    screen.clock = lambda: 4_600.0
    app = ScreenApp(screen)
    async with app.run_test(size=(150, 20)) as pilot:
        table = screen.query_one(SyncedTable)
        assert [c.name for _, c in screen._rows] == ["api", "db", "web"]
        await pilot.press("down")
        calls = Calls(table)
        db = box("b", "db", cpu=1.75)
        h.containers = {**h.containers, db.id: db}
        h.containers_version += 1
        screen.refresh_containers()
        assert calls.updated == [(f"gpu-a/{db.id}", "CPU")], calls.updated
        assert not calls.added and not calls.removed
        assert screen.selected() == ("gpu-a", db)

        # One goes, one comes; the cursor stays on db.
        calls.clear()
        new = box("d", "cache")
        h.containers = {k: v for k, v in h.containers.items() if v.name != "api"} | {new.id: new}
        h.containers_version += 1
        screen.refresh_containers()
        assert calls.removed == [f"gpu-a/{'a' * 12}"] and calls.added == [f"gpu-a/{new.id}"]
        assert [c.name for _, c in screen._rows] == ["cache", "db", "web"]
        assert screen.selected() == ("gpu-a", db)

        # The filter shows the rows it matches and keeps the cursor where it can.
        await pilot.press("slash", *"db", "enter")
        assert [c.name for _, c in screen._rows] == ["db"] and screen.selected() == ("gpu-a", db)
        assert table.has_focus
        await pilot.press("escape")  # the first Esc clears the filter, it does not leave
        assert isinstance(app.screen, ContainersScreen) and len(screen._rows) == 3


def request(rid: str, prio: int, state: str = "queued", seq: int = 0) -> RequestInfo:
    return RequestInfo(
        id=rid, name=f"job-{rid}", argv=["sleep", "60"], shell=False, priority=prio,
        cpus=1, gpus=0, share_gpu=False, mem=0, state=state, seq=seq,  # type: ignore[arg-type]
        submitted=1_000.0, started=1_000.0 if state == "running" else None,
    )  # fmt: skip


async def test_requests_screen_keeps_the_cursor_on_its_request() -> None:
    fleet = FleetState()
    h = fleet.add("cpu-a")
    h.requests = {r.id: r for r in (request("r1", 0, seq=1), request("r2", 0, seq=2))}
    h.requests_version += 1
    screen = RequestsScreen(fleet, None)
    screen.clock = lambda: 1_100.0
    app = ScreenApp(screen)
    async with app.run_test(size=(150, 20)) as pilot:
        table = screen.query_one(SyncedTable)
        await pilot.press("down")
        assert screen.selected() is not None and screen.selected()[1].id == "r2"  # type: ignore[index]
        calls = Calls(table)
        # r2 raised above r1: the rows swap, the cursor follows r2, one cell changes.
        h.requests = {**h.requests, "r2": request("r2", 10, seq=2)}
        h.requests_version += 1
        screen.refresh_requests()
        assert calls.updated == [("cpu-a/r2", "PRIO")] and not calls.added
        assert table.keys == ["cpu-a/r2", "cpu-a/r1"]
        assert table.selected_key == "cpu-a/r2" and table.cursor_row == 0
