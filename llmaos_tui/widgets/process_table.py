"""The process table of one host: htop's columns, sortable and filterable.

Only rows and cells that changed are touched on an update (clear-and-refill
doubles the cost of a large table); the cursor stays on its process across
re-sorts, as in htop. Where the table is narrow, the optional columns (MEM%, GPU MEM,
CORE, AFFINITY) leave, the least useful first, so COMMAND keeps its room.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets._data_table import RowKey

from llmaos_agent.protocol import GpuSample, Proc
from llmaos_agent.safetext import clean
from llmaos_tui.widgets.safe_table import SafeTable
from llmaos_tui.widgets.text import NA, human_bytes


class Column(NamedTuple):
    key: str
    label: str
    width: int | None
    cell: Callable[[Proc, ProcessTable], Any]
    sort: Callable[[Proc, ProcessTable], Any]
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


STATE_WORDS = {
    "running": "R", "sleeping": "S", "disk-sleep": "D", "stopped": "T", "tracing-stop": "t",
    "zombie": "Z", "dead": "X", "wake-kill": "K", "waking": "W", "idle": "I", "parked": "P",
    "locked": "L", "waiting": "W",
}  # fmt: skip
"""psutil's words, as agents before protocol 5 (and the recordings made from them) sent
the state: each as the letter ps shows."""


def state_letter(status: str) -> str:
    """The state letter as ps shows it, its case kept: ``t`` (traced) is not ``T``
    (stopped)."""
    return STATE_WORDS.get(status) or status[:1]


def _gpu_share(p: Proc, v: ProcessTable) -> Text:
    sm = v.gpu_sm.get(p.pid)
    return _r("-" if sm is None else f"{100 * sm:.1f}")


COLUMNS: tuple[Column, ...] = (
    Column("pid", "PID", 8, lambda p, _v: _r(str(p.pid)), lambda p, _v: p.pid),
    Column("user", "USER", 10, lambda p, _v: _l(p.user[:10]), lambda p, _v: p.user, False),
    Column("cpu", "CPU%", 6, lambda p, _v: _r(f"{p.cpu:.1f}"), lambda p, _v: p.cpu),
    Column("mem", "MEM", 6, lambda p, _v: _r(human_bytes(p.rss)), lambda p, _v: p.rss),
    Column(
        "memp",
        "MEM%",
        5,
        lambda p, v: _r(f"{100 * p.rss / v.mem_total:.1f}" if v.mem_total else NA),
        lambda p, _v: p.rss,
    ),
    Column(
        "nice",
        "NI",
        4,
        lambda p, _v: _r(NA if p.nice is None else str(p.nice)),
        lambda p, _v: p.nice if p.nice is not None else 99,
    ),
    Column(
        "aff",
        "AFFINITY",
        8,
        lambda p, v: _l(_aff(p, v.all_cores)),
        lambda p, _v: p.affinity or "",
        False,
    ),
    Column(
        "core",
        "CORE",
        4,
        lambda p, _v: _r(NA if p.core is None else str(p.core)),
        lambda p, _v: p.core if p.core is not None else -1,
    ),
    Column(
        "gpu",
        "GPU MEM",
        7,
        lambda p, _v: _r(human_bytes(p.gpu_mem) if p.gpu_mem else "-"),
        lambda p, _v: p.gpu_mem or 0,
    ),
    # The SM share, summed over the GPUs the process is on (nvitop's SM%): "-" where no
    # device reports it, as for GPU MEM.
    Column("gpup", "GPU%", 5, _gpu_share, lambda p, v: v.gpu_sm.get(p.pid, -1.0)),
    Column(
        "state",
        "S",
        1,
        lambda p, _v: _l(state_letter(p.status)),
        lambda p, _v: state_letter(p.status),
        False,
    ),
    Column(
        "name",
        "COMMAND",
        None,
        lambda p, v: _l(v.prefix.get(p.pid, "") + p.cmd),
        lambda p, _v: p.cmd,
        False,
    ),
)
BY_KEY = {c.key: c for c in COLUMNS}
OPTIONAL = ("memp", "gpu", "gpup", "core", "aff")
"""Columns that leave a narrow table, the first to leave last here."""
GPU_ONLY = frozenset({"gpup"})
"""Columns shown only on a host with GPUs (unless sorted on)."""
COMMAND_MIN = 30
"""The room COMMAND keeps before an optional column is shown."""


def width_of(c: Column) -> int:
    """A column's width: room for its label and the sort arrow (CORE▼, AFFINITY▲ or S▼
    would lose the arrow in their cells' widths)."""
    return max(c.width or 0, len(c.label) + 1)


def columns_for(width: int, sort_key: str = "", gpus: bool = False) -> tuple[Column, ...]:
    """The columns a table ``width`` wide shows: every required one and the one sorted
    on (so the sort is always marked), then the optional ones in order while COMMAND
    keeps :data:`COMMAND_MIN` (each cell has 2 of padding). The GPU share is left out
    on a host without ``gpus``."""
    keep = {c.key for c in COLUMNS if c.key not in OPTIONAL or c.key == sort_key}
    used = sum(width_of(c) + 2 for c in COLUMNS if c.key in keep and c.width)
    for key in OPTIONAL:
        if key in keep or (key in GPU_ONLY and not gpus):
            continue
        w = width_of(BY_KEY[key]) + 2
        if used + w + COMMAND_MIN + 2 <= width:
            keep.add(key)
            used += w
    return tuple(c for c in COLUMNS if c.key in keep)


DESC_FIRST = frozenset({"cpu", "mem", "memp", "gpu", "gpup"})
"""Columns whose first sort puts the biggest on top, as htop's P and M do."""


def matches(p: Proc, needle: str) -> bool:
    """The ``/`` filter: a case-insensitive substring of pid, user, name or command."""
    n = needle.lower()
    return n in str(p.pid) or n in p.user.lower() or n in p.name.lower() or n in p.cmd.lower()


def gpu_sm_by_pid(gpus: Sequence[GpuSample]) -> dict[int, float]:
    """Each GPU process's SM share summed over the devices it is on; a pid no device
    reports a share for is left out (its cell says "-", not 0)."""
    out: dict[int, float] = {}
    for g in gpus:
        for gp in g.procs:
            if gp.sm is not None:
                out[gp.pid] = out.get(gp.pid, 0.0) + gp.sm
    return out


# ------------------------------------------------------------------ the tree

MAX_LEAD = 3 * 32
"""The most indentation a row gets (32 levels): a chain of thousands of processes
(hostile, or a fork bomb) would otherwise give every row a line of glyphs."""


def is_root(p: Proc, procs: Mapping[int, Proc]) -> bool:
    """A tree's top: its parent is not in ``procs`` (or is itself), or it is pid 1 or
    kthreadd, as htop draws them."""
    return p.ppid == p.pid or p.ppid not in procs or p.pid <= 1 or p.name == "kthreadd"


def with_ancestors(procs: Mapping[int, Proc], keep: set[int]) -> set[int]:
    """``keep`` and every ancestor of its processes in ``procs``: a filtered tree still
    shows where each match hangs. Each step adds a pid or stops, so a ppid loop ends."""
    out = set(keep)
    for pid in keep:
        p = procs[pid]
        while not is_root(p, procs) and p.ppid not in out:
            out.add(p.ppid)
            p = procs[p.ppid]
    return out


def tree_rows(
    procs: Mapping[int, Proc],
    key: Callable[[Proc], Any],
    reverse: bool,
    collapsed: set[int] | frozenset[int] = frozenset(),
) -> list[tuple[int, str]]:
    """``procs`` as htop's tree: (pid, the COMMAND cell's prefix) in display order, each
    parent before its children, siblings ordered by ``key`` (then pid), ``reverse`` as
    the flat table. A pid in ``collapsed`` with children shows ``+`` and how many it
    hides, and they are left out. Every process is drawn once: those on a ppid loop
    (no root above them) start trees of their own. No recursion: a deep chain draws."""
    return _Tree(procs, key, reverse, collapsed).rows()


class _Tree:
    def __init__(
        self,
        procs: Mapping[int, Proc],
        key: Callable[[Proc], Any],
        reverse: bool,
        collapsed: set[int] | frozenset[int],
    ) -> None:
        self.procs, self.key, self.reverse, self.collapsed = procs, key, reverse, collapsed
        self.children: dict[int, list[Proc]] = {}
        self.roots: list[Proc] = []
        for p in procs.values():
            if is_root(p, procs):
                self.roots.append(p)
            else:
                self.children.setdefault(p.ppid, []).append(p)
        self.out: list[tuple[int, str]] = []
        self.seen: set[int] = set()

    def ordered(self, ps: list[Proc]) -> list[Proc]:
        return sorted(ps, key=lambda q: (self.key(q), q.pid), reverse=self.reverse)

    def rows(self) -> list[tuple[int, str]]:
        for r in self.ordered(self.roots):
            self.walk(r)
        if len(self.seen) < len(self.procs):  # ppid loops: no root leads to them
            for p in self.ordered([p for p in self.procs.values() if p.pid not in self.seen]):
                if p.pid not in self.seen:
                    self.walk(p)
        return self.out

    def hidden_under(self, pid: int) -> int:
        """How many are under ``pid``, each marked drawn (a collapse hides them)."""
        n, stack = 0, [pid]
        while stack:
            for c in self.children.get(stack.pop(), ()):
                if c.pid not in self.seen:
                    self.seen.add(c.pid)
                    n += 1
                    stack.append(c.pid)
        return n

    def walk(self, top: Proc) -> None:
        self.seen.add(top.pid)
        # (process, the lead its row inherits, last of its siblings, a tree's top)
        stack: list[tuple[Proc, str, bool, bool]] = [(top, "", True, True)]
        while stack:
            p, lead, last, is_top = stack.pop()
            branch = "" if is_top else lead + ("└─" if last else "├─")
            if p.pid in self.collapsed and (n := self.hidden_under(p.pid)):
                self.out.append((p.pid, (branch[:-1] + "+ " if branch else "+ ") + f"[{n}] "))
                continue
            self.out.append((p.pid, branch + " " if branch else ""))
            kids = [c for c in self.ordered(self.children.get(p.pid, [])) if c.pid not in self.seen]
            self.seen.update(c.pid for c in kids)
            sub = ("" if is_top else lead + ("   " if last else "│  "))[:MAX_LEAD]
            for i in range(len(kids) - 1, -1, -1):  # the stack pops the first sibling first
                stack.append((kids[i], sub, i == len(kids) - 1, False))


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
        Binding("t", "tree", "Tree", show=False, id="procs.tree"),
        Binding("f5", "tree", "Tree", show=False, id="procs.tree_f5"),
        Binding("minus", "collapse", "Collapse", key_display="-", show=False, id="procs.collapse"),
        Binding("plus", "expand", "Expand", key_display="+", show=False, id="procs.expand"),
        # DataTable's Enter (select) is replaced: the host screen opens the detail.
        Binding("enter", "detail", "Detail", id="host.detail"),
    ]
    DEFAULT_CSS = """
    ProcessTable { height: 1fr; }
    """

    class DetailAsked(Message):
        """Enter on a process: the screen opens its detail."""

        def __init__(self, proc: Proc) -> None:
            super().__init__()
            self.proc = proc

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.sort_key = "cpu"
        self.reverse = True
        self.needle = ""
        self.mem_total: int = 0
        self.all_cores: str = ""
        self.tree_view = False
        self.collapsed: set[int] = set()
        self.prefix: dict[int, str] = {}
        """pid -> what the COMMAND cell draws before the command (tree view only)."""
        self.has_gpus = False
        self.gpu_sm: dict[int, float] = {}
        self._gpus_seen: object = None
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
        lines = self._draw_cell(value, row_key, row_index, column_index, base_style, width,
                                cursor, hover)  # fmt: skip
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        self._cells_drawn[key] = (value, lines)
        return lines

    def _draw_cell(
        self,
        value: object,
        row_key: RowKey,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool,
        hover: bool,
    ) -> SegmentLines | None:
        """The segments DataTable's ``_render_cell`` gives a cell of ours, made directly;
        None for a cell this does not cover (DataTable renders it).

        DataTable renders each cell through Rich (``Styled(Padding(text))`` into
        ``console.render_lines``), about 70 us a cell: the 330 cells of the first frame
        with processes were the biggest part of that frame (docs/BENCHMARKS.md, start-up).
        Our cells are one-line Texts without spans or a style of their own, right-aligned
        or not: for them Rich's result is one padding space, the text (right: stripped
        of trailing spaces and padded on the left; cropped to the cell as Rich crops,
        ``set_cell_size``), the room left (not right-aligned) and one padding space,
        every piece in the cell's style. tests/test_process_table.py compares the two on
        every kind of cell (wide characters, cropping, cursor and hover)."""
        if (
            type(value) is not Text
            or value._spans
            or value.style
            or value.no_wrap is not None
            or value.overflow is not None
            or value.justify not in (None, "right")
            or self.cell_padding != 1
            or width < 3
        ):
            return None
        plain = value.plain
        if "\n" in plain or "\t" in plain:
            return None
        row = self.rows.get(row_key)
        if row is None or row.height != 1:
            return None
        component, post = self._get_styles_to_render_cell(
            False,
            False,
            row_index < self.fixed_rows or column_index < self.fixed_columns,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        # As DataTable composes it: the base, the cell's place (a click names it), the
        # component (cursor, hover); then Styled's post style over each segment.
        style = base_style + Style.from_meta({"row": row_index, "column": column_index})
        style = style + component
        if post:
            style = style + post if style else post
        room = width - 2
        pad = Segment(" ", style)
        if value.justify == "right" and plain:  # an empty Text is DataTable's empty cell
            body = plain.rstrip()
            n = cell_len(body)
            body = set_cell_size(body, room) if n > room else " " * (room - n) + body
            return [[pad, Segment(body, style), pad]]
        n = cell_len(plain)
        if n > room:
            return [[pad, Segment(set_cell_size(plain, room), style), pad]]
        if n == room:
            return [[pad, Segment(plain, style), pad]]
        return [[pad, Segment(plain, style), Segment(" " * (room - n), style), pad]]

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """DataTable measures every cell of the new rows through Rich (85 rows of 11 cells
        at start, a tenth of the first frame with processes) to widen auto-width columns,
        and finds auto-height rows and row labels. Ours have none of them (every column
        has its width, rows are one line, no labels): only the virtual size is left to set,
        as DataTable sets it. Anything else goes to DataTable."""
        if any(c.auto_width for c in self.columns.values()):
            super()._update_dimensions(new_rows)
            return
        rows = self.rows
        for key in new_rows:
            row = rows.get(key)
            if row is not None and (row.label is not None or row.auto_height):
                super()._update_dimensions(new_rows)
                return
        width = sum(c.get_render_width(self) for c in self.columns.values())
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(
            width + self._row_label_column_width, self._total_row_height + header
        )

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
        # Before the first layout the size is 0: the terminal's width is the best guess (the
        # table spans the host screen), so the first resize finds the columns it would make
        # and the rows (the first sample's, often there by then) are not built twice.
        width = (self.size.width or self.app.size.width or 200) - 2
        cols = columns_for(width, self.sort_key, self.has_gpus)
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
        if not self.shown_columns:
            self._fit_columns()  # before its on_mount: the columns, and the rows with them
        else:
            self._sync()

    def update_gpus(self, gpus: Sequence[GpuSample]) -> None:
        """The host's latest GPUs: whether the GPU% column shows, and its values. Only the
        cells whose share changed are touched (the shares move every sample, the
        process table every other)."""
        if gpus is self._gpus_seen:
            return
        self._gpus_seen = gpus
        has = bool(gpus)
        shares = gpu_sm_by_pid(gpus)
        if has != self.has_gpus:
            self.has_gpus = has
            self.gpu_sm = shares
            if self.is_mounted:
                self._fit_columns()
        if shares == self.gpu_sm:
            return
        old, self.gpu_sm = self.gpu_sm, shares
        if "gpup" not in {c.key for c in self.shown_columns}:
            if self.sort_key == "gpup":
                self._sync()
            return
        changed = {pid for pid in old.keys() | shares.keys() if old.get(pid) != shares.get(pid)}
        if self.sort_key == "gpup":
            self._sync()  # the order changes with the values
        for pid in changed:
            p = self._shown.get(pid)
            if p is not None:
                self.update_cell(str(pid), "gpup", _gpu_share(p, self))

    def set_filter(self, needle: str) -> None:
        if needle != self.needle:
            self.needle = needle
            self._sync()

    @property
    def shown_pids(self) -> list[int]:
        """Pids in display order."""
        return [int(str(row.key.value)) for row in self.ordered_rows]

    def _wanted(self) -> tuple[dict[int, Proc], list[int] | None]:
        """The rows to show, and in tree view their order (:attr:`prefix` set for it)."""
        procs = self._procs
        want = {pid: p for pid, p in procs.items() if not self.needle or matches(p, self.needle)}
        if not self.tree_view:
            self.prefix = {}
            return want, None
        if self.needle:
            want = {pid: procs[pid] for pid in with_ancestors(procs, set(want))}
        self.collapsed &= procs.keys()  # a pid gone may come back as another process
        col = BY_KEY[self.sort_key]
        rows = tree_rows(want, lambda q: col.sort(q, self), self.reverse, self.collapsed)
        self.prefix = dict(rows)
        return {pid: want[pid] for pid, _ in rows}, [pid for pid, _ in rows]

    def _sync(self) -> None:
        old_prefix = self.prefix
        want, order = self._wanted()
        selected = self._selected_pid()
        if order is not None and selected is not None and selected not in want:
            selected = self._collapsed_above(selected, want)
        for pid in [pid for pid in self._shown if pid not in want]:
            self.remove_row(str(pid))
            del self._shown[pid]
        for pid, p in want.items():
            old = self._shown.get(pid)
            if old is None:
                self.add_row(*self._cells(p), key=str(pid))
            else:
                if old != p:
                    for c in self.shown_columns:
                        if c.sort(old, self) != c.sort(p, self) or c.key == "memp":
                            self.update_cell(str(pid), c.key, c.cell(p, self))
                if old_prefix.get(pid, "") != self.prefix.get(pid, ""):
                    self.update_cell(str(pid), "name", BY_KEY["name"].cell(p, self))
            self._shown[pid] = p
        self._resort(selected, order)

    def _collapsed_above(self, pid: int, shown: Mapping[int, Proc]) -> int | None:
        """The nearest ancestor of ``pid`` that is shown (the cursor's process hidden by
        a collapse goes to the row that hides it); None past a loop or the top."""
        seen = {pid}
        p = self._procs.get(pid)
        while p is not None and p.ppid not in seen:
            if p.ppid in shown:
                return p.ppid
            seen.add(p.ppid)
            p = self._procs.get(p.ppid)
        return None

    def _cells(self, p: Proc) -> list[Any]:
        return [c.cell(p, self) for c in self.shown_columns]

    @property
    def selected(self) -> Proc | None:
        """The process under the cursor, as last reported."""
        pid = self._selected_pid()
        return None if pid is None else self._shown.get(pid)

    def _selected_pid(self) -> int | None:
        if not self.row_count:
            return None
        return int(str(self.ordered_rows[self.cursor_row].key.value))

    def _resort(self, keep: int | None, order: list[int] | None = None) -> None:
        shown = self._shown
        if order is not None:
            at = {pid: i for i, pid in enumerate(order)}
            self.sort("pid", key=lambda cell: at[int(cell.plain)])
        else:
            col = BY_KEY[self.sort_key]
            self.sort(
                "pid",
                key=lambda cell: (col.sort(shown[int(cell.plain)], self), int(cell.plain)),
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
        if self.tree_view:
            self._sync()  # siblings take the new order: the glyphs change with it
        else:
            self._resort(self._selected_pid())
        self.refresh()

    # ---------------------------------------------------------------- tree

    def set_tree(self, on: bool) -> None:
        if on != self.tree_view:
            self.tree_view = on
            self._sync()
            self.refresh()

    def action_tree(self) -> None:
        self.set_tree(not self.tree_view)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("collapse", "expand"):
            return self.tree_view
        return True

    def collapse(self, pid: int, on: bool = True) -> None:
        """Hide (``on``) or show again the subtree under ``pid`` (tree view)."""
        if on == (pid in self.collapsed):
            return
        if on:
            self.collapsed.add(pid)
        else:
            self.collapsed.discard(pid)
        if self.tree_view:
            self._sync()

    def action_collapse(self) -> None:
        pid = self._selected_pid()
        if pid is not None:
            self.collapse(pid)

    def action_expand(self) -> None:
        pid = self._selected_pid()
        if pid is not None:
            self.collapse(pid, on=False)

    def action_detail(self) -> None:
        p = self.selected
        if p is not None:
            self.post_message(self.DetailAsked(p))

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
