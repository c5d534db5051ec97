"""The fleet's hosts, one row each: status, size, load, balance and a CPU sparkline.

Sortable (htop's keys, bound on the fleet screen so they order the heat map too)
and filterable; only rows and cells that changed are touched on an update, and
the cursor stays on its host across re-sorts. The columns are sized to the table's
width (:func:`fit_widths`): the numbers keep theirs, the sparkline gives way first,
then the OS, the status and the name (the fleet screen's detail line says the cursor's
host's status in full). A host that is a node of a Slurm cluster says its node state
after its status (``up · slurm idle``), in the same column: no column is added, so a
fleet without Slurm draws as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any, NamedTuple

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets._data_table import Column, ColumnKey, RowKey

from llmaos_agent.safetext import clean
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.widgets.graph import sparkline_cell
from llmaos_tui.widgets.safe_table import SafeTable
from llmaos_tui.widgets.text import NA, fixed, percent, sparkline

SPARK_WIDTH = 20
"""The sparkline's width where there is room; it takes up to SPARK_MAX when there is more."""
SPARK_MAX = 40
CELL_PAD = 1  # DataTable's cell_padding: one cell each side of every column
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("name", "HOST", 16),
    ("status", "STATUS", 24),
    ("os", "OS", 8),
    ("cores", "CORES", 5),
    ("cpu", "CPU%", 5),
    ("mem", "MEM%", 5),
    ("gpu", "GPU%", 5),
    ("beta_cpu", "β CPU", 5),
    ("beta_gpu", "β GPU", 5),
    ("net", "NET/s", 5),
    ("disk", "DISK/s", 5),
    ("spark", "CPU HISTORY", SPARK_WIDTH),
    ("gpu_spark", "GPU HISTORY", SPARK_WIDTH),
)
CELL_CACHE_SIZE = 8192  # rendered cells kept: several screens' worth of 10 columns
LINE_CACHE_SIZE = 2048  # rendered lines kept: several screens' worth
NUMERIC = frozenset({"cores", "cpu", "mem", "gpu", "beta_cpu", "beta_gpu"})
OPTIONAL = ("net", "disk")
"""Number columns shown whole or not at all (width 0) as the width allows (GROWTH)."""
RIGHT = NUMERIC | set(OPTIONAL)
SPARKS = ("spark", "gpu_spark")
DROPPABLE = (*OPTIONAL, *SPARKS)
FLEX = ("name", "status", "os", "spark", "gpu_spark")
"""The columns whose width follows the table's; the numbers keep theirs."""
MINIMUM = {"name": 6, "status": 6, "os": 0, "spark": 0, "gpu_spark": 0, "net": 0, "disk": 0}
GROWTH = (
    ("name", 16),
    ("status", 12),
    ("os", 8),
    ("status", 24),
    ("spark", SPARK_WIDTH),
    ("net", 0),
    ("disk", 0),
    ("gpu_spark", SPARK_WIDTH),
)
"""Once every minimum is met, each column in turn grows to the width named (at most to
its longest text; the sparkline always): read backwards, the order columns give way as
the terminal narrows, the sparkline first. Beyond these the status and the name grow to
their longest text, then the sparklines to SPARK_MAX. NET/s and DISK/s come whole or
not at all, after the CPU sparkline and before the GPU one (the status has its 24 cells
before the sparkline: more columns left it too little to say why a host is down)."""
SPARK_USEFUL = 4  # a sparkline narrower than this says nothing: its cells go to the status


def fit_widths(
    available: int, longest: Mapping[str, int], sorted_key: str | None
) -> dict[str, int]:
    """Each column's width (its text, without the padding) in ``available`` cells.

    ``longest``: the longest text each flexible column holds now. Every number column
    keeps its width (one more for the sort arrow), the β columns too; the others share
    the rest by GROWTH.
    """
    widths: dict[str, int] = {}
    for key, label, width in COLUMNS:
        if key in NUMERIC:
            widths[key] = max(width or 0, len(label) + (key == sorted_key))
    # Every column's padding counted, a dropped one's too (though _Column draws none):
    # the table never runs past the width, whatever is dropped.
    room = available - sum(widths.values()) - 2 * CELL_PAD * len(COLUMNS)
    for k in (*FLEX, *OPTIONAL):
        widths[k] = MINIMUM[k]
        room -= MINIMUM[k]
    top = {k: longest.get(k, 0) for k in FLEX} | {"spark": SPARK_MAX, "gpu_spark": SPARK_MAX}
    steps = [
        *GROWTH,
        ("status", top["status"]),
        ("name", top["name"]),
        ("spark", SPARK_MAX),
        ("gpu_spark", SPARK_MAX),
    ]
    full = {k: max(w or 0, len(label) + (k == sorted_key)) for k, label, w in COLUMNS}
    for k, upto in steps:
        if k in OPTIONAL:
            if not widths[k] and room >= full[k]:
                widths[k] = full[k]
                room -= full[k]
            continue
        grow = max(0, min(min(upto, max(top[k], MINIMUM[k])) - widths[k], room))
        widths[k] += grow
        room -= grow
    for k in SPARKS:
        if widths[k] < SPARK_USEFUL:
            widths["status"] += widths[k]
            widths[k] = 0
    return widths


_STATUS_ORDER = {
    HostStatus.DOWN: 0,
    HostStatus.STALE: 1,
    HostStatus.CONNECTING: 2,
    HostStatus.DEPLOYING: 3,
    HostStatus.UP: 4,
}


def _live(h: HostState) -> bool:
    return h.up and h.sample is not None


SORTS: dict[str, Callable[[HostState], Any]] = {
    "name": lambda h: h.name.lower(),
    "status": lambda h: _STATUS_ORDER[h.status],
    "cores": lambda h: h.cores or None,
    "cpu": lambda h: h.cpu if _live(h) else None,
    "mem": lambda h: h.mem if _live(h) else None,
    "gpu": lambda h: h.gpu if _live(h) else None,
    "beta_cpu": lambda h: h.beta_cpu if _live(h) else None,
    "beta_gpu": lambda h: h.beta_gpu if _live(h) else None,
    "net": lambda h: h.io.net_total if _live(h) else None,
    "disk": lambda h: h.io.disk_total if _live(h) else None,
}
"""What each sortable column sorts by; None (not known) always sorts last."""
DESC_FIRST = RIGHT
"""Columns whose first sort puts the biggest on top, as htop's P and M do."""


def host_matches(
    h: HostState, needle: str, groups: Sequence[str] = (), target: str | None = None
) -> bool:
    """The ``/`` filter: every word must match, case-insensitively.

    ``status:down`` (or ``s:down``) matches a status, ``group:gpu`` (or ``g:gpu``)
    an inventory group (``groups``: the host's, from its inventory entry); a plain
    word is a substring of the name, the target (``target``, else the state's), a
    group or the status.
    """
    groups = [g.lower() for g in groups]
    where = (h.target if target is None else target).lower()
    for word in needle.lower().split():
        field, _, value = word.partition(":")
        if value and field in ("s", "status"):
            if not h.status.value.startswith(value):
                return False
        elif value and field in ("g", "group"):
            if not any(value in g for g in groups):
                return False
        elif not (
            word in h.name.lower()
            or word in where
            or any(word in g for g in groups)
            or h.status.value.startswith(word)
        ):
            return False
    return True


class HostFacts(NamedTuple):
    """What the inventory says of a host that its state does not carry: where it is
    reached (``alice@gpu1:2222``) and its group(s)."""

    target: str = ""
    groups: tuple[str, ...] = ()


class HostTable(SafeTable):
    """The cells are cleaned by :class:`SafeTable`: a down reason is the agent's or the
    network's text."""

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {
        "hosttable--up",
        "hosttable--stale",
        "hosttable--down",
        "hosttable--spark",
    }
    # DataTable's own Enter is hidden from the footer; name it for what it does here.
    BINDINGS = [Binding("enter", "select_cursor", "Open host", id="fleet.open")]
    DEFAULT_CSS = """
    HostTable { height: 1fr; }
    HostTable > .hosttable--up { color: $success; }
    HostTable > .hosttable--stale { color: $warning; }
    HostTable > .hosttable--down { color: $error; }
    HostTable > .hosttable--spark { color: $secondary; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self._hosts: dict[str, HostState] = {}
        """Every host seen, in fleet order (the order with no sort)."""
        self._rows: dict[str, tuple[Any, ...]] = {}
        """The cells of the rows shown."""
        self.sort_key: str | None = None
        self.reverse = False
        self.needle = ""
        self.facts: dict[str, HostFacts] = {}
        """Each host's target and groups, for the filter (see :meth:`set_facts`)."""
        self._versions: dict[tuple[str, str], int] = {}
        """A number per shown cell that changes whenever the cell does (see _render_cell)."""
        self._next_version = 0
        self._cell_cache: dict[tuple[Any, ...], Any] = {}
        self._row_versions: dict[str, int] = {}
        self._line_cache_by_row: dict[tuple[Any, ...], Any] = {}
        self._styles: dict[tuple[str, str], Style] = {}
        self._longest: dict[str, int] = {}
        """The longest text of each flexible column's cells shown (grows; reset on resize)."""
        self.widths: dict[str, int] = {}
        """The columns' widths now (see :func:`fit_widths`)."""
        self._stale: set[str] = set()
        """Hosts whose row is off screen and whose figures may have moved since it was last
        drawn: set when the row scrolls into view (see :meth:`_sync_shown`)."""
        self._shape: dict[str, tuple[Any, ...]] = {}
        """What of each shown row decides its place, its filter match and the columns'
        widths (see :func:`_shape`), as last synced: a change is never deferred."""
        self._order_applied: list[str] | None = None
        """The rows' order as last sorted (None: read it off the table)."""
        self._column_keys = [ColumnKey(key) for key, _, _ in COLUMNS]

    def on_mount(self) -> None:
        for key, _, width in COLUMNS:
            self.add_column(self._label(key), key=key, width=width)
        for ck, col in list(self.columns.items()):
            self.columns[ck] = _Column(
                col.key, col.label, col.width, col.content_width, col.auto_width
            )
        self._fit_columns()

    def on_resize(self) -> None:
        self._longest = {}
        for cells in self._rows.values():
            self._note_lengths(cells)
        self._fit_columns()
        self._sync_shown()  # a taller table shows rows drawn while off screen

    def _note_lengths(self, cells: tuple[Any, ...]) -> bool:
        """Widen the flexible columns' longest texts by these cells; True when one grew."""
        grew = False
        for (key, _, _), cell in zip(COLUMNS, cells, strict=True):
            if key in FLEX and key not in SPARKS:  # the sparkline's is its column's
                n = cell.cell_len
                if n > self._longest.get(key, 0):
                    self._longest[key] = n
                    grew = True
        return grew

    def _fit_columns(self) -> None:
        # The vertical scrollbar's cells are not the table's to fill.
        available = self.size.width - self.scrollbar_size_vertical
        if available <= 0:
            return
        widths = fit_widths(available, self._longest, self.sort_key)
        if widths == self.widths:
            return
        spark_changed = any(widths.get(k) != self.widths.get(k) for k in SPARKS)
        self.widths = widths
        for key, column in self.columns.items():
            column.width = widths[str(key.value)]
        if spark_changed:
            # The sparkline's length is its column's: every row's changes, drawn as rows show.
            self._stale.update(self._rows)
            self._sync_shown()
        self._require_update_dimensions = True
        self._line_cache_by_row.clear()
        self.refresh()

    def _label(self, key: str) -> Text:
        label = dict((k, lbl) for k, lbl, _ in COLUMNS)[key]
        arrow = ("▼" if self.reverse else "▲") if key == self.sort_key else ""
        return Text(label + arrow, justify="right" if key in RIGHT else "left")

    # ---------------------------------------------------------------- data

    def update_hosts(self, hosts: Iterable[HostState]) -> None:
        """Bring the hosts' rows up to date. A row off screen whose status, OS and size
        are unchanged is only marked (its figures are drawn when it scrolls into view):
        with a thousand hosts about forty rows show, and building every row's cells at
        each redraw was most of the fleet screen's cost."""
        changed = False
        deferred = False
        window = self._window()
        rows = self._row_locations
        for h in hosts:
            name = h.name
            self._hosts.setdefault(name, h)
            if window is not None and self._shape.get(name) == _shape(h):
                at = rows.get(RowKey(name))
                if at is not None and not window[0] <= at < window[1]:
                    self._stale.add(name)
                    deferred = True
                    continue
            changed |= self._sync_row(h)
        # An off-screen row's figures can still move it when the table is sorted by one.
        if changed or (deferred and self.sort_key is not None):
            self._resort(self.selected_host)
        self._sync_shown()

    def _window(self) -> tuple[int, int] | None:
        """The row indices on screen (a margin of a row each side); None before the table
        has a size, when every row is treated as shown."""
        height = self.size.height
        if not self.is_mounted or height <= 0:
            return None
        top = int(self.scroll_y)
        return max(0, top - 1), top + height + 1

    def _sync_shown(self) -> None:
        """Draw the figures of the stale rows now on screen."""
        if not self._stale:
            return
        window = self._window()
        if window is None:
            names: Iterable[str] = list(self._stale)
        else:
            get_key = self._row_locations.get_key
            keys = (get_key(i) for i in range(window[0], min(window[1], self.row_count)))
            names = [str(k.value) for k in keys if k is not None and k.value in self._stale]
        for name in names:
            self._stale.discard(name)
            h = self._hosts.get(name)
            if h is not None:
                self._sync_row(h)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._sync_shown()

    def _sync_row(self, h: HostState) -> bool:
        """Add, update or remove the host's row; True when anything changed."""
        name = h.name
        old = self._rows.get(name)
        self._stale.discard(name)
        if not self._matches(h):
            if old is None:
                return False
            self._remove(name)
            return True
        cells = self._cells(h)
        self._rows[name] = cells
        self._shape[name] = _shape(h)
        if self._note_lengths(cells) and self.is_mounted:
            self.call_later(self._fit_columns)
        if old is None:
            self.add_row(*cells, key=name)
            self._order_applied = None
            for key, _, _ in COLUMNS:
                self._bump(name, key)
            return True
        if old == cells:
            return False
        row_key = RowKey(name)
        for (key, _, _), column_key, before, after in zip(
            COLUMNS, self._column_keys, old, cells, strict=True
        ):
            if before != after:
                self._bump(name, key)
                self.put_cell(row_key, column_key, after)
        # Only this row's lines are drawn again, not the whole table's.
        at = self._row_locations.get(row_key)
        if at is not None:
            self.refresh_row(at)
        return True

    def _remove(self, name: str) -> None:
        self.remove_row(name)
        self._order_applied = None
        del self._rows[name]
        self._shape.pop(name, None)
        for key, _, _ in COLUMNS:
            self._versions.pop((name, key), None)
        self._row_versions.pop(name, None)

    def _bump(self, name: str, key: str) -> None:
        self._next_version += 1
        self._versions[(name, key)] = self._next_version
        self._row_versions[name] = self._next_version

    def _render_line(self, y: int, x1: int, x2: int, base_style: Any) -> Any:
        """DataTable's line, cached per row until one of its cells changes (the same counter
        as the cells, see ``_render_cell``): assembling 60 unchanged lines a frame was the
        next largest cost after the cells. Header lines and other cursor types go to
        DataTable as before."""
        if self.cursor_type != "row":
            return super()._render_line(y, x1, x2, base_style)
        try:
            row_key, line_no = self._get_offsets(y)
        except LookupError:
            return super()._render_line(y, x1, x2, base_style)
        version = self._row_versions.get(str(row_key.value))
        if row_key is self._header_row_key or version is None:
            return super()._render_line(y, x1, x2, base_style)
        row = self._row_locations.get(row_key)
        key = (
            version,
            row,  # zebra stripes and the lines' click targets follow the row's place
            line_no,
            x1,
            x2,
            self.size.width,
            tuple(self.widths.values()),
            self.show_cursor and self.cursor_coordinate.row == row,
            self._show_hover_cursor and self.hover_coordinate.row == row,
            base_style,
            self._pseudo_class_state,
        )
        strip = self._line_cache_by_row.get(key)
        if strip is None:
            if len(self._line_cache_by_row) > LINE_CACHE_SIZE:
                self._line_cache_by_row.clear()
            strip = super()._render_line(y, x1, x2, base_style)
            self._line_cache_by_row[key] = strip
        return strip

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Any,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> Any:
        """DataTable's cell rendering, cached per cell until that cell changes.

        DataTable keys its cache on one counter that every ``update_cell`` bumps, so one
        changed cell re-renders every cell on screen: with 200 hosts sampling each second
        that was most of the fleet screen's drawing time (profiled). Here a cell keeps its
        lines until its own value, place, width or style changes. Header and label cells
        go to DataTable as before.
        """
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        version = (
            self._versions.get((str(row_key.value), str(column_key.value)))
            if row_key is not None and column_key is not None
            else None
        )
        if version is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (
            version,
            row_index,  # the lines carry the row's index for mouse clicks
            column_index,
            base_style,
            width,
            cursor,
            hover,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        lines = self._cell_cache.get(key)
        if lines is None:
            if len(self._cell_cache) > CELL_CACHE_SIZE:
                self._cell_cache.clear()
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            self._cell_cache[key] = lines
        return lines

    def set_facts(self, facts: Mapping[str, HostFacts]) -> None:
        """The hosts' targets and groups (the inventory's), which the filter matches."""
        self.facts = dict(facts)
        if self.needle:
            keep = self.selected_host
            for h in self._hosts.values():
                self._sync_row(h)
            self._resort(keep)
            self._sync_shown()

    def _matches(self, h: HostState) -> bool:
        f = self.facts.get(h.name)
        if f is None:
            return host_matches(h, self.needle)
        return host_matches(h, self.needle, f.groups, f.target or None)

    def set_filter(self, needle: str) -> None:
        if needle == self.needle:
            return
        self.needle = needle
        keep = self.selected_host
        for h in self._hosts.values():
            self._sync_row(h)
        self._resort(keep)
        self._sync_shown()

    @property
    def selected_host(self) -> str | None:
        if not self.row_count:
            return None
        return str(self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value)

    @property
    def shown_names(self) -> list[str]:
        """The names of the hosts shown, in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    @property
    def shown_hosts(self) -> list[HostState]:
        return [self._hosts[n] for n in self.shown_names]

    # ------------------------------------------------------------- sorting

    def _order(self) -> list[str]:
        names = [n for n in self._hosts if n in self._rows]  # fleet order
        if self.sort_key is None:
            return names
        by = SORTS[self.sort_key]
        values = {n: by(self._hosts[n]) for n in names}
        known = [n for n in names if values[n] is not None]
        # Python's sort is stable in reverse too: ties keep the fleet order.
        known.sort(key=values.__getitem__, reverse=self.reverse)
        return known + [n for n in names if values[n] is None]

    def _resort(self, keep: str | None) -> None:
        order = self._order()
        # Most updates change cells, not the order; a sort makes the table lay out and
        # redraw every row again, so it is done only when the order moved.
        applied = self._order_applied
        if applied is None:
            applied = self._order_applied = self.shown_names
        if order != applied:
            # The name cells hold the cleaned names (SafeTable).
            rank = {clean(n): i for i, n in enumerate(order)}
            self.sort("name", key=lambda cell: rank[cell.plain])
            self._order_applied = order
        if keep is not None and keep in self._rows:
            row = self.get_row_index(keep)
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False)

    def sort_by(self, key: str | None, reverse: bool | None = None) -> None:
        """Sort by a column (None: fleet order); the same column again flips the order."""
        if key is not None and key not in SORTS:
            raise ValueError(f"no sortable column {key!r}")
        if reverse is None:
            reverse = not self.reverse if key == self.sort_key else key in DESC_FIRST
        self.sort_key, self.reverse = key, reverse
        for k, _, _ in COLUMNS:
            self.columns[k].label = self._label(k)  # type: ignore[index]
        self._fit_columns()  # the sort arrow takes a cell of its column
        self._resort(self.selected_host)
        self._sync_shown()
        self.refresh()

    def invert(self) -> None:
        self.sort_by(self.sort_key or "name", reverse=not self.reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = str(event.column_key.value)
        if key in SORTS:
            self.sort_by(key)

    # --------------------------------------------------------------- cells

    def _style(self, component: str) -> Style:
        """A component class's style, looked up once per theme: the lookup walks the CSS
        and was a tenth of the drawing time with 200 hosts (profiled)."""
        key = (component, self.app.theme)
        style = self._styles.get(key)
        if style is None:
            # The colour alone: the component's style carries the table's background
            # too, which would paint over the cursor row's (the status was unreadable on
            # it, in both themes); the cursor's own colour wins there (DataTable's
            # cursor_foreground_priority is "css").
            full = self.get_component_rich_style(component)
            style = self._styles[key] = Style(color=full.color, bold=full.bold)
        return style

    def _cells(self, h: HostState) -> tuple[Any, ...]:
        style = self._style(_status_class(h.status))
        # A node of a Slurm cluster says its state before the reason, which may be cut.
        slurm = f" · slurm {h.slurm}" if h.slurm is not None else ""
        status = h.status.value + slurm + (f": {h.reason}" if h.reason else "")
        os_name = h.hello.host.os if h.hello else NA
        live = _live(h)
        spark = self.widths.get("spark", SPARK_WIDTH)
        gpu_spark = self.widths.get("gpu_spark", SPARK_WIDTH)
        return (
            # Text, not str: a str cell is read as markup; cleaned first, as Rich would
            # drop a BEL or CR without a trace.
            Text(clean(h.name)),
            Text(clean(status), style),
            Text(clean(os_name)),
            Text(str(h.cores) if h.cores else NA, justify="right"),
            Text(percent(h.cpu if live else None), justify="right"),
            Text(percent(h.mem if live else None), justify="right"),
            Text(percent(h.gpu if live else None), justify="right"),
            Text(fixed(h.beta_cpu if live else None), justify="right"),
            Text(fixed(h.beta_gpu if live else None), justify="right"),
            Text(rate_cell(h.io.net_total if live else None), justify="right"),
            Text(rate_cell(h.io.disk_total if live else None), justify="right"),
            Text(
                sparkline(_last_cpu(h, spark), spark),
                self._style("hosttable--spark"),
            ),
            Text(
                _gpu_spark(h, gpu_spark),
                self._style("hosttable--spark"),
            ),
        )


class _Column(Column):
    """A column of width 0 takes no cells, its padding neither: a dropped column."""

    def get_render_width(self, data_table: DataTable[Any]) -> int:
        return 0 if self.width == 0 else super().get_render_width(data_table)


def _shape(h: HostState) -> tuple[Any, ...]:
    """What of a host decides its row's place in the fleet order, whether the filter keeps
    it and how wide the status, OS and name columns are: not its figures."""
    return (h.status, h.reason, h.hello.host.os if h.hello else None, h.cores, h.slurm)


def _last_cpu(h: HostState, n: int) -> list[float]:
    """The last ``n`` history points' CPU, oldest first, without walking the whole history
    (up to an hour of points a host)."""
    if n <= 0:
        return []
    tail = [p.cpu for p in islice(reversed(h.history), n)]
    tail.reverse()
    return tail


def _gpu_spark(h: HostState, n: int) -> str:
    """The GPUs' mean utilisation over the last ``n`` points; blank for a host without
    GPUs (nothing to say, rather than a flat line that reads as idle)."""
    if n <= 0 or not h.gpu_count:
        return ""
    tail = [p.gpu for p in islice(reversed(h.history), n)]
    tail.reverse()
    return sparkline_cell(tail, n)


def rate_cell(bps: int | None) -> str:
    """Bytes per second in at most five cells, decimal units: ``980``, ``12.3k``, ``45M``."""
    if bps is None:
        return NA
    v = float(bps)
    for unit in ("", "k", "M", "G", "T"):
        if v < 1000 or unit == "T":
            if not unit:
                return f"{v:.0f}"
            return f"{v:.1f}{unit}" if v < 100 else f"{v:.0f}{unit}"
        v /= 1000
    return NA  # pragma: no cover - the loop always returns


def _status_class(status: HostStatus) -> str:
    if status is HostStatus.UP:
        return "hosttable--up"
    if status is HostStatus.DOWN:
        return "hosttable--down"
    return "hosttable--stale"
