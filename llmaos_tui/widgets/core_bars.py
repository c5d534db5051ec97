"""Every logical core's load, all drawn by one widget, in the richest form that fits.

One widget drawing every bar costs a fraction of one widget per bar (DESIGN.md, "The
wire"). The bars wrap into as many columns as fit; where the height the screen gives
is too small for that, the form gets denser, as btop's does: ``full`` (index, bar,
percent), ``compact`` (a shorter bar and percent), ``tiny`` (index and bar) and, where
even that cannot fit, ``dense``: one cell per core, a heat strip per row labelled with
its index range. Every core is always drawn; :func:`fit` says how, for a size.

Where the full form's cells are wide (:data:`SPARK_CELL`: a few cores on a wide screen,
as btop's per-core graphs), each core's cell also draws its history as a sparkline
after its percent, from the host's per-core ring (``HostIO.cores``, filled from the
agent's history at attach, so it is full at once). Its width is that of the cell, not
an extra line: the layout (and every core drawn) is the same with or without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from rich.text import Text
from textual.geometry import Size

from llmaos_tui.fleet.host_io import CORE_POINTS, HostIO
from llmaos_tui.widgets.lines import LineWidget, Segs
from llmaos_tui.widgets.spark import spark_pieces
from llmaos_tui.widgets.text import bar, bar_pieces, level_class

Form = Literal["full", "compact", "tiny", "dense"]
FORMS: tuple[Form, ...] = ("full", "compact", "tiny", "dense")
CELL_MIN = 18
"""The narrowest cell of the full form."""
_LEVELS = "▁▂▃▄▅▆▇█"
SPARK_CELL = 36
"""The narrowest full-form cell that gets a history sparkline beside its bar."""


def _label_w(n: int) -> int:
    return len(str(max(0, n - 1)))


def _cell_min(form: Form, n: int) -> int:
    w = _label_w(n)
    if form == "full":
        return max(CELL_MIN, w + 12)
    if form == "compact":
        return w + 2 + 3  # index, a bar of 2 or more, "45" right-aligned in 3
    return w + 2  # tiny: index and a bar


def _dense_per_row(n: int, width: int) -> int:
    room = max(1, width - (2 * _label_w(n) + 2))
    if room >= 8:
        room -= room % 8  # whole octets: the ranges read as 0-63, 64-127, …
    return max(1, min(n, room))


def shape(n: int, width: int, form: Form) -> tuple[int, int]:
    """(columns, rows) of ``n`` cores ``width`` wide in ``form`` (dense: cores a row)."""
    n = max(1, n)
    if form == "dense":
        per_row = _dense_per_row(n, width)
        return per_row, math.ceil(n / per_row)
    cols = max(1, min(n, (width + 1) // (_cell_min(form, n) + 1)))
    rows = math.ceil(n / cols)
    return math.ceil(n / rows), rows


def split(cell: int, label_w: int) -> tuple[int, int]:
    """(bar, sparkline) widths of a full-form cell ``cell`` wide: the bar keeps a third
    of the room (8 at least) and the sparkline the rest, where the cell is at least
    :data:`SPARK_CELL`; else the bar all of it and no sparkline."""
    room = cell - label_w - 1 - 5  # index, a space, then "100%" right-aligned in 5
    if cell < SPARK_CELL:
        return max(1, room), 0
    spark = min(CORE_POINTS, room - max(8, room // 3) - 1)
    return room - spark - 1, spark


def fit(n: int, width: int, max_rows: int) -> tuple[Form, int]:
    """The richest form whose rows fit in ``max_rows``, and its rows; dense when none
    does (more rows than asked rather than a core left out)."""
    for form in FORMS:
        rows = shape(n, width, form)[1]
        if rows <= max_rows:
            return form, rows
    return "dense", shape(n, width, "dense")[1]


class CoreBars(LineWidget):
    """Drawn line by line (:class:`~llmaos_tui.widgets.lines.LineWidget`): only the lines
    holding a core whose bar, percent or level changed are repainted."""

    COMPONENT_CLASSES = {
        "corebars--label",
        "corebars--low",
        "corebars--mid",
        "corebars--high",
        "corebars--empty",
    }
    DEFAULT_CSS = """
    CoreBars { height: auto; min-height: 1; }
    CoreBars > .corebars--label { color: $text-muted; }
    CoreBars > .corebars--low { color: $success; }
    CoreBars > .corebars--mid { color: $warning; }
    CoreBars > .corebars--high { color: $error; }
    CoreBars > .corebars--empty { color: $text-disabled; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.loads: list[float] = []
        self.max_rows = 10_000
        """The most rows the screen lets this have; the form is chosen to fit it."""
        self.form: Form = "full"
        """The form of the last frame drawn."""
        self.io: HostIO | None = None
        """The host's histories (the per-core ring the sparklines draw)."""
        self._io_version = -1
        self.spark_width = 0
        """Each core's sparkline width in the last frame drawn (0: none shown)."""

    @property
    def bar_count(self) -> int:
        return len(self.loads)

    def update_loads(self, loads: Sequence[float], io: HostIO | None = None) -> None:
        """The latest loads, and (``io``) the host's histories for the sparklines: a new
        sample in them redraws only where sparklines are shown."""
        new = list(loads)
        version = io.version if io is not None else -1
        # A history given or taken away changes the layout; a new sample in it matters
        # only where sparklines are drawn.
        moved = io is not self.io or (self.spark_width > 0 and version != self._io_version)
        self.io, self._io_version = io, version
        if new == self.loads and not moved:
            return
        relayout = len(new) != len(self.loads)
        self.loads = new
        if relayout:
            self.refresh(layout=True)
        self.lines_changed()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, fit(len(self.loads), width, self.max_rows)[1])

    def frame_key(self) -> tuple[object, ...]:
        return (len(self.loads),)

    def history(self, i: int) -> list[float | None]:
        """Core ``i``'s history, oldest first (empty without one, or when the ring's
        shape is not this sample's: a host whose core count changed)."""
        io = self.io
        if io is None or io.cores.width != len(self.loads):
            return []
        return io.cores.series(i)

    def draw_lines(self) -> list[Segs]:
        n = len(self.loads)
        if not n:
            line = self.line()
            line.add("waiting for the first sample…", "corebars--label")
            return [line.done(0)]
        width = self.size.width
        form, _rows = fit(n, width, max(1, self.size.height))
        self.form = form
        if form == "dense":
            self.spark_width = 0
            return self._dense_lines(width)
        return self._bar_lines(form, width)

    def _bar_lines(self, form: Form, width: int) -> list[Segs]:
        # The same pieces, in the same order, as _bars's Text.
        n = len(self.loads)
        cols, rows = shape(n, width, form)
        cell = (width - (cols - 1)) // cols
        label_w = _label_w(n)
        pct_w = {"full": 5, "compact": 3, "tiny": 0}[form]
        gap = " " * (1 if form == "full" else 0)
        bar_w = max(1, cell - label_w - len(gap) - pct_w)
        spark_w = 0
        if form == "full":
            bar_w, spark_w = split(cell, label_w) if self.io is not None else (bar_w, 0)
        self.spark_width = spark_w
        out = []
        for r in range(rows):
            line = self.line()
            for c in range(cols):
                i = c * rows + r  # column-major, as btop numbers its cores
                if i >= n:
                    break
                if c:
                    line.add(" ")
                load = self.loads[i]
                fill = level_class(load, "corebars")
                line.add(f"{i:>{label_w}}{gap}", "corebars--label")
                for text, filled in bar_pieces(load, bar_w):
                    line.add(text, fill if filled else "corebars--empty")
                for text, cls in self._tail(form, i, load, fill, spark_w):
                    line.add(text, cls)
            out.append(line.done(r))
        return out

    def _tail(
        self, form: Form, i: int, load: float, fill: str, spark_w: int
    ) -> list[tuple[str, str | None]]:
        """What follows core ``i``'s bar: its percent (full, compact) and, in a wide full
        cell, a space and its history's sparkline."""
        if form == "compact":
            return [(f"{round(load * 100):3d}", fill)]
        if form != "full":
            return []
        out: list[tuple[str, str | None]] = [(f"{load * 100:4.0f}%", fill)]
        if spark_w:
            out.append((" ", None))
            out.extend(spark_pieces(self.history(i), spark_w, "corebars"))
        return out

    def _dense_lines(self, width: int) -> list[Segs]:
        n = len(self.loads)
        per_row, rows = shape(n, width, "dense")
        w = _label_w(n)
        out = []
        for r in range(rows):
            line = self.line()
            lo, hi = r * per_row, min(n, (r + 1) * per_row) - 1
            line.add(f"{lo:>{w}}-{hi:<{w}} ", "corebars--label")
            for i in range(lo, hi + 1):
                load = min(max(self.loads[i], 0.0), 1.0)
                line.add(_LEVELS[min(7, int(load * 8))], level_class(load, "corebars"))
            out.append(line.done(r))
        return out

    def render(self) -> Text:
        """The frame as a Rich Text (what render_line draws; for print() and tests)."""
        n = len(self.loads)
        if not n:
            return Text(
                "waiting for the first sample…", self.get_component_rich_style("corebars--label")
            )
        width = self.size.width
        form, _rows = fit(n, width, max(1, self.size.height))
        self.form = form
        if form == "dense":
            return self._dense(width)
        return self._bars(form, width)

    def _bars(self, form: Form, width: int) -> Text:
        n = len(self.loads)
        cols, rows = shape(n, width, form)
        cell = (width - (cols - 1)) // cols
        label_w = _label_w(n)
        pct_w = {"full": 5, "compact": 3, "tiny": 0}[form]
        gap = 1 if form == "full" else 0
        bar_w = max(1, cell - label_w - gap - pct_w)
        spark_w = 0
        if form == "full":
            bar_w, spark_w = split(cell, label_w) if self.io is not None else (bar_w, 0)
        label = self.get_component_rich_style("corebars--label")
        empty = self.get_component_rich_style("corebars--empty")
        out = Text(no_wrap=True, overflow="crop")
        for r in range(rows):
            if r:
                out.append("\n")
            for c in range(cols):
                i = c * rows + r  # column-major, as btop numbers its cores
                if i >= n:
                    break
                if c:
                    out.append(" ")
                load = self.loads[i]
                fill_cls = level_class(load, "corebars")
                fill = self.get_component_rich_style(fill_cls)
                out.append(f"{i:>{label_w}}" + " " * gap, label)
                out.append_text(bar(load, bar_w, fill, empty))
                for text, cls in self._tail(form, i, load, fill_cls, spark_w):
                    out.append(text, self.get_component_rich_style(cls) if cls else None)
        return out

    def _dense(self, width: int) -> Text:
        n = len(self.loads)
        per_row, rows = shape(n, width, "dense")
        w = _label_w(n)
        label = self.get_component_rich_style("corebars--label")
        out = Text(no_wrap=True, overflow="crop")
        for r in range(rows):
            if r:
                out.append("\n")
            lo, hi = r * per_row, min(n, (r + 1) * per_row) - 1
            out.append(f"{lo:>{w}}-{hi:<{w}} ", label)
            for i in range(lo, hi + 1):
                load = min(max(self.loads[i], 0.0), 1.0)
                cls = level_class(load, "corebars")
                out.append(_LEVELS[min(7, int(load * 8))], self.get_component_rich_style(cls))
        return out
