"""The process table of one host: htop's columns, sortable and filterable.

Only rows and cells that changed are touched on an update (clear-and-refill
doubles the cost of a large table); the cursor stays on its process across
re-sorts, as in htop. Where the table is narrow, the optional columns (MEM%, GPU MEM,
CORE, AFFINITY) leave, the least useful first, so COMMAND keeps its room.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.widgets import DataTable

from llmaos_agent.protocol import Proc
from llmaos_agent.safetext import clean
from llmaos_tui.widgets.safe_table import SafeTable
from llmaos_tui.widgets.text import NA, human_bytes


class Column(NamedTuple):
    key: str
    label: str
    width: int | None
    cell: Callable[[Proc, int, str], Any]
    sort: Callable[[Proc], Any]
    numeric: bool = True


def _r(text: str) -> Text:
    return Text(text, justify="right")


def _l(text: str) -> Text:
    # Always Text: a plain str cell is read as markup, and "[kworker/0:1]" would vanish.
    # Cleaned before it is a Text: Rich drops a BEL or CR silently, so the escape would
    # not show that it was there.
    return Text(clean(text))


def _aff(p: Proc, all_cores: str) -> str:
    if p.affinity is None:
        return NA
    return "all" if p.affinity == all_cores else p.affinity


COLUMNS: tuple[Column, ...] = (
    Column("pid", "PID", 8, lambda p, _t, _a: _r(str(p.pid)), lambda p: p.pid),
    Column("user", "USER", 10, lambda p, _t, _a: _l(p.user[:10]), lambda p: p.user, False),
    Column("cpu", "CPU%", 6, lambda p, _t, _a: _r(f"{p.cpu:.1f}"), lambda p: p.cpu),
    Column("mem", "MEM", 6, lambda p, _t, _a: _r(human_bytes(p.rss)), lambda p: p.rss),
    Column(
        "memp",
        "MEM%",
        5,
        lambda p, t, _a: _r(f"{100 * p.rss / t:.1f}" if t else NA),
        lambda p: p.rss,
    ),
    Column(
        "nice",
        "NI",
        4,
        lambda p, _t, _a: _r(NA if p.nice is None else str(p.nice)),
        lambda p: p.nice if p.nice is not None else 99,
    ),
    Column(
        "aff", "AFFINITY", 8, lambda p, _t, a: _l(_aff(p, a)), lambda p: p.affinity or "", False
    ),
    Column(
        "core",
        "CORE",
        4,
        lambda p, _t, _a: _r(NA if p.core is None else str(p.core)),
        lambda p: p.core if p.core is not None else -1,
    ),
    Column(
        "gpu",
        "GPU MEM",
        7,
        lambda p, _t, _a: _r(human_bytes(p.gpu_mem) if p.gpu_mem else "-"),
        lambda p: p.gpu_mem or 0,
    ),
    Column("state", "S", 1, lambda p, _t, _a: _l(p.status[:1].upper()), lambda p: p.status, False),
    Column("name", "COMMAND", None, lambda p, _t, _a: _l(p.cmd), lambda p: p.cmd, False),
)
BY_KEY = {c.key: c for c in COLUMNS}
OPTIONAL = ("memp", "gpu", "core", "aff")
"""Columns that leave a narrow table, the first to leave last here."""
COMMAND_MIN = 30
"""The room COMMAND keeps before an optional column is shown."""


def width_of(c: Column) -> int:
    """A column's width: room for its label and the sort arrow (CORE▼, AFFINITY▲ or S▼
    would lose the arrow in their cells' widths)."""
    return max(c.width or 0, len(c.label) + 1)


def columns_for(width: int, sort_key: str = "") -> tuple[Column, ...]:
    """The columns a table ``width`` wide shows: every required one and the one sorted
    on (so the sort is always marked), then the optional ones in order while COMMAND
    keeps :data:`COMMAND_MIN` (each cell has 2 of padding)."""
    keep = {c.key for c in COLUMNS if c.key not in OPTIONAL or c.key == sort_key}
    used = sum(width_of(c) + 2 for c in COLUMNS if c.key in keep and c.width)
    for key in OPTIONAL:
        if key in keep:
            continue
        w = width_of(BY_KEY[key]) + 2
        if used + w + COMMAND_MIN + 2 <= width:
            keep.add(key)
            used += w
    return tuple(c for c in COLUMNS if c.key in keep)


DESC_FIRST = frozenset({"cpu", "mem", "memp", "gpu"})
"""Columns whose first sort puts the biggest on top, as htop's P and M do."""


def matches(p: Proc, needle: str) -> bool:
    """The ``/`` filter: a case-insensitive substring of pid, user, name or command."""
    n = needle.lower()
    return n in str(p.pid) or n in p.user.lower() or n in p.name.lower() or n in p.cmd.lower()


SegmentLines = list[list[Segment]]
CELL_CACHE = 4096
"""Rendered cells kept: a few screens' worth of rows times columns."""


class ProcessTable(SafeTable):
    """The cells are cleaned by :class:`SafeTable` (a command line is another user's text).

    DataTable keys its rendered cells on a counter that every ``update_cell`` and sort
    bumps, so one process's new CPU% re-renders every visible cell through Rich, most
    of the console's work on a steady host screen (bench/watch_cost.py). Here a cell's
    rendering is kept while its value is the same object at the same row and column,
    drawn the same way (cursor, hover, style): only the cells that changed or moved are
    rendered again, and what is drawn is what DataTable would draw.
    """

    BINDINGS = [
        Binding("P", "sort('cpu')", "Sort CPU", id="procs.sort_cpu"),
        Binding("M", "sort('mem')", "Sort MEM", id="procs.sort_mem"),
        Binding("N", "sort('pid')", "Sort PID", id="procs.sort_pid"),
        Binding("I", "invert", "Invert", id="procs.invert"),
        Binding(">", "next_column", "Next sort column", show=False, id="procs.sort_next"),
        Binding("<", "prev_column", "Prev sort column", show=False, id="procs.sort_prev"),
    ]
    DEFAULT_CSS = """
    ProcessTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.sort_key = "cpu"
        self.reverse = True
        self.needle = ""
        self.mem_total = 0
        self.all_cores = ""
        self._procs: dict[int, Proc] = {}
        self._shown: dict[int, Proc] = {}
        self.shown_columns: tuple[Column, ...] = ()
        self._cmd_w = 0
        self._cells_drawn: LRUCache[tuple[Any, ...], tuple[object, SegmentLines]] = LRUCache(
            CELL_CACHE
        )

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        if row_index < 0 or column_index < 0:  # the header and labels: DataTable's cache
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        value = self._data[row_key][column_key]
        key = (
            row_index,  # in the cell's style meta: a click names its row
            column_index,
            row_key,
            column_key,
            base_style,
            width,
            cursor,
            hover,
            self.show_cursor,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        hit = self._cells_drawn.get(key)
        if hit is not None and hit[0] is value:
            return hit[1]
        lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        self._cells_drawn[key] = (value, lines)
        return lines

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._cells_drawn.clear()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cells_drawn.clear()

    def on_mount(self) -> None:
        self._fit_columns()

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        # COMMAND takes the rest of the width (less the vertical scrollbar): a column as
        # wide as the longest command line would add a horizontal scrollbar, a row less.
        width = (self.size.width or 200) - 2
        cols = columns_for(width, self.sort_key)
        used = sum(width_of(c) + 2 for c in cols if c.width)
        cmd_w = max(8, width - used - 2)
        if (cols, cmd_w) != (self.shown_columns, self._cmd_w):
            self._set_columns(cols, cmd_w)

    def _set_columns(self, cols: tuple[Column, ...], cmd_w: int) -> None:
        selected = self._selected_pid()
        self.clear(columns=True)
        self._shown = {}
        self.shown_columns, self._cmd_w = cols, cmd_w
        for c in cols:
            self.add_column(self._label(c), key=c.key, width=width_of(c) if c.width else cmd_w)
        if self._procs:
            self._sync()
            if selected is not None and selected in self._shown:
                self.move_cursor(row=self.get_row_index(str(selected)), animate=False)

    def _label(self, c: Column) -> Text:
        arrow = ("▼" if self.reverse else "▲") if c.key == self.sort_key else ""
        return Text(c.label + arrow, justify="right" if c.numeric else "left")

    # ---------------------------------------------------------------- data

    def update_procs(self, procs: Mapping[int, Proc], mem_total: int, cores: int) -> None:
        self._procs = dict(procs)
        self.mem_total = mem_total
        self.all_cores = f"0-{cores - 1}" if cores > 1 else "0"
        self._sync()

    def set_filter(self, needle: str) -> None:
        if needle != self.needle:
            self.needle = needle
            self._sync()

    @property
    def shown_pids(self) -> list[int]:
        """Pids in display order."""
        return [int(str(row.key.value)) for row in self.ordered_rows]

    def _sync(self) -> None:
        want = {
            pid: p for pid, p in self._procs.items() if not self.needle or matches(p, self.needle)
        }
        selected = self._selected_pid()
        for pid in [pid for pid in self._shown if pid not in want]:
            self.remove_row(str(pid))
            del self._shown[pid]
        for pid, p in want.items():
            old = self._shown.get(pid)
            if old is None:
                self.add_row(*self._cells(p), key=str(pid))
            elif old != p:
                for c in self.shown_columns:
                    if c.sort(old) != c.sort(p) or c.key == "memp":
                        self.update_cell(str(pid), c.key, c.cell(p, self.mem_total, self.all_cores))
            self._shown[pid] = p
        self._resort(selected)

    def _cells(self, p: Proc) -> list[Any]:
        return [c.cell(p, self.mem_total, self.all_cores) for c in self.shown_columns]

    @property
    def selected(self) -> Proc | None:
        """The process under the cursor, as last reported."""
        pid = self._selected_pid()
        return None if pid is None else self._shown.get(pid)

    def _selected_pid(self) -> int | None:
        if not self.row_count:
            return None
        return int(str(self.ordered_rows[self.cursor_row].key.value))

    def _resort(self, keep: int | None) -> None:
        col = BY_KEY[self.sort_key]
        shown = self._shown
        self.sort(
            "pid",
            key=lambda cell: (col.sort(shown[int(cell.plain)]), int(cell.plain)),
            reverse=self.reverse,
        )
        if keep is not None and keep in shown:
            self.move_cursor(row=self.get_row_index(str(keep)), animate=False)

    # ------------------------------------------------------------- sorting

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        if key not in BY_KEY:
            raise ValueError(f"no column {key!r}")
        if reverse is None:
            # The same column again flips the order; a new one starts with the big values.
            reverse = not self.reverse if key == self.sort_key else key in DESC_FIRST
        self.sort_key, self.reverse = key, reverse
        if self.is_mounted and key not in {c.key for c in self.shown_columns}:
            self._fit_columns()  # an optional column left out: back, to carry the arrow
        for c in self.shown_columns:
            self.columns[c.key].label = self._label(c)  # type: ignore[index]
        self._resort(self._selected_pid())
        self.refresh()

    def action_sort(self, key: str) -> None:
        self.sort_by(key, reverse=key in DESC_FIRST)

    def action_invert(self) -> None:
        self.sort_by(self.sort_key, reverse=not self.reverse)

    def action_next_column(self) -> None:
        self._step(1)

    def action_prev_column(self) -> None:
        self._step(-1)

    def _step(self, d: int) -> None:
        keys = [c.key for c in self.shown_columns] or [c.key for c in COLUMNS]
        at = keys.index(self.sort_key) if self.sort_key in keys else -1
        nxt = keys[(at + d) % len(keys)]
        self.sort_by(nxt, reverse=nxt in DESC_FIRST)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))
