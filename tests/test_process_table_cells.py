"""The process table draws its cells itself (``ProcessTable._draw_cell``) instead of
through Rich; what it draws must be what DataTable's own rendering draws, segment for
segment (text and style, the click's row and column in the style's meta included), or
the screen would change.

Checked on a real table in a Textual app: cells of every column of processes whose
user names and commands are long (cropped), wide (CJK, cropped through a wide
character), empty, padded with spaces, or carry escapes; at every width from 3 to 40;
on and off the cursor's row and under the hover; and the whole table's lines as the
screen gets them, with and without the direct path.
"""

from __future__ import annotations

import itertools

from rich.style import Style
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from llmaos_agent.protocol import Proc
from llmaos_tui.widgets.process_table import ProcessTable
from tests.helpers import wait_for

GB = 1 << 30


def proc(pid: int, user: str, cmd: str, cpu: float = 1.0, status: str = "S") -> Proc:
    return Proc(pid, 1, cmd.split(" ", maxsplit=1)[0][:15] or "x", user, cpu, 10 << 20, 0, "0-3", 0,
                status, 1_700_000_000.0 + pid, None, cmd)  # fmt: skip


PROCS = {
    p.pid: p
    for p in [
        proc(1, "root", "/sbin/init splash"),
        proc(22, "alice", "python3 " + "x" * 300, 99.5),
        proc(333, "日本語ユーザー名", "日本語のコマンド 引数 " * 20, 12.25),
        proc(4444, "bob", "", 0.0),
        proc(55555, "a", "trailing spaces   ", 7.0, "Z"),
        proc(666666, "esc\x1buser", "evil \x1b[31mred\x07 \u202e text", 3.0),
        proc(7, "x" * 40, "漢" * 3, 0.1, "R"),
    ]
}


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ProcessTable(id="procs")

    def on_mount(self) -> None:
        self.query_one(ProcessTable).update_procs(PROCS, 64 * GB, 4)


async def test_direct_cells_are_datatables_cells() -> None:
    app = TableApp()
    async with app.run_test(size=(160, 20)):
        t = app.query_one(ProcessTable)
        await wait_for(lambda: t.row_count == len(PROCS), what="the rows")
        base = t.rich_style
        drawn = 0
        for row, col in itertools.product(range(t.row_count), range(len(t.columns))):
            row_key = t._row_locations.get_key(row)
            column_key = t._column_locations.get_key(col)
            assert row_key is not None and column_key is not None
            value = t._data[row_key][column_key]
            ways = itertools.product(range(3, 41), (False, True), (False, True))
            for width, cursor, hover in ways:
                ours = t._draw_cell(value, row_key, row, col, base, width, cursor, hover)
                t._cell_render_cache.clear()  # keyed without the width
                rich = DataTable._render_cell(t, row, col, base, width, cursor, hover)
                assert ours is not None, (row, col, value)
                assert ours == rich, (row, col, width, cursor, hover, value)
                metas = [[s.style and s.style.meta for s in line] for line in ours]
                assert metas == [[s.style and s.style.meta for s in line] for line in rich]
                assert metas[0][0] == {"row": row, "column": col}
                drawn += 1
        assert drawn == t.row_count * len(t.columns) * 38 * 4


async def test_the_table_reads_the_same_drawn_either_way() -> None:
    app = TableApp()
    async with app.run_test(size=(120, 20)) as pilot:
        t = app.query_one(ProcessTable)
        await wait_for(lambda: t.row_count == len(PROCS), what="the rows")
        await pilot.pause()
        fast = [t.render_line(y) for y in range(t.size.height)]
        t._clear_caches()
        t._draw_cell = lambda *_a, **_k: None  # type: ignore[method-assign]
        slow = [t.render_line(y) for y in range(t.size.height)]
        assert [list(s) for s in fast] == [list(s) for s in slow]
        text = "\n".join(s.text for s in fast)
        assert "日本語のコマンド" in text and "init splash" in text and "\\e" in text


async def test_hand_made_cells_too() -> None:
    # Values the columns do not make today but a cell of ours could hold: right-aligned
    # with trailing spaces (Rich strips them), wide characters cut in half, empty.
    app = TableApp()
    async with app.run_test(size=(160, 20)):
        t = app.query_one(ProcessTable)
        await wait_for(lambda: t.row_count == len(PROCS), what="the rows")
        row_key = t._row_locations.get_key(1)
        column_key = t._column_locations.get_key(2)
        assert row_key is not None and column_key is not None
        for value in (
            Text("12   ", justify="right"),
            Text(" 1 2 ", justify="right"),
            Text("日本語x", justify="right"),
            Text("", justify="right"),
            Text("   "),
            Text("x日本語"),
        ):
            t.put_cell(row_key, column_key, value)
            for width in range(3, 12):
                ours = t._draw_cell(value, row_key, 1, 2, t.rich_style, width, False, False)
                t._cell_render_cache.clear()
                rich = DataTable._render_cell(t, 1, 2, t.rich_style, width, False, False)
                assert ours == rich, (value, width, ours, rich)


async def test_the_tables_size_is_datatables() -> None:
    # Its dimensions skip DataTable's measuring of every cell: the size it scrolls over
    # (one line a row, the header, the columns' widths) is the one DataTable finds.
    app = TableApp()
    async with app.run_test(size=(160, 20)) as pilot:
        t = app.query_one(ProcessTable)
        await wait_for(lambda: t.row_count == len(PROCS), what="the rows")
        await pilot.pause()
        ours = t.virtual_size
        assert ours.height == len(PROCS) + 1
        assert ours.width == sum(c.get_render_width(t) for c in t.columns.values())
        DataTable._update_dimensions(t, list(t.rows))
        assert t.virtual_size == ours


def test_a_cell_not_ours_is_left_to_datatable() -> None:
    t = ProcessTable()
    styled = Style(color="red")
    for value in (
        "plain str",
        Text("x", style="bold"),
        Text("two\nlines"),
        Text("centred", justify="center"),
        Text("wraps", no_wrap=False),
        Text.assemble(("a", "red"), "b"),
        12,
    ):
        assert t._draw_cell(value, None, 0, 0, styled, 10, False, False) is None  # type: ignore[arg-type]
