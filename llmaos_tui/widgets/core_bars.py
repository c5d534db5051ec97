"""Every logical core's load, all drawn by one widget, in the richest form that fits.

One widget drawing every bar costs a fraction of one widget per bar (DESIGN.md, "The
wire"). The bars wrap into as many columns as fit; where the height the screen gives
is too small for that, the form gets denser, as btop's does: ``full`` (index, bar,
percent), ``compact`` (a shorter bar and percent), ``tiny`` (index and bar) and, where
even that cannot fit, ``dense``: one cell per core, a heat strip per row labelled with
its index range. Every core is always drawn; :func:`fit` says how, for a size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from rich.text import Text
from textual.geometry import Size

from llmaos_tui.widgets.lines import LineWidget, Segs
from llmaos_tui.widgets.text import bar, bar_pieces, level_class

Form = Literal["full", "compact", "tiny", "dense"]
FORMS: tuple[Form, ...] = ("full", "compact", "tiny", "dense")
CELL_MIN = 18
"""The narrowest cell of the full form."""
_LEVELS = "▁▂▃▄▅▆▇█"


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

    @property
    def bar_count(self) -> int:
        return len(self.loads)

    def update_loads(self, loads: Sequence[float]) -> None:
        new = list(loads)
        if new == self.loads:
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
                if form == "full":
                    line.add(f"{load * 100:4.0f}%", fill)
                elif form == "compact":
                    line.add(f"{round(load * 100):3d}", fill)
            out.append(line.done(r))
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
                fill = self.get_component_rich_style(level_class(load, "corebars"))
                out.append(f"{i:>{label_w}}" + " " * gap, label)
                out.append_text(bar(load, bar_w, fill, empty))
                if form == "full":
                    out.append(f"{load * 100:4.0f}%", fill)
                elif form == "compact":
                    out.append(f"{round(load * 100):3d}", fill)
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
