"""History graphs as btop and nvitop draw them, and a sparkline for table cells.

Pure data in: a sequence of floats per series, ``None`` for a gap (a sample the host did
not send), newest last. Utilisation is a fraction in [0, 1]; a rate (bytes/s) or a size
is autoscaled to the highest sample on screen, and that top is labelled in human units
("max 12.3 MB/s"), as btop labels its network graphs.

Two forms, as btop's graph symbols: ``braille`` (2x4 dots a cell, so two samples a
cell, four levels a line) and ``block`` (one sample a cell, eight levels a line with
▁▂▃▄▅▆▇█). Newest on the right; the width decides how many samples show. Colours are
theme variables only: by value in bands ($success below 50%, $warning below 85%,
$error above, the thresholds of :func:`llmaos_tui.formats.level_class`), a dot's band
being the value it stands for capped at its line's height, so a tall graph shades from
green at the bottom to red at the top as btop's gradient does; or one colour ($accent).

The cost: a graph keeps the :class:`~textual.strip.Strip` objects it drew, keyed on a
counter its data bumps. An unchanged graph draws nothing again; appending a sample
rebuilds its lines once, on the next frame. :class:`GraphGrid` draws many small graphs
(every core of a host) in one widget, one widget costing a fraction of many
(DESIGN.md, "The wire"); bench/graph_render.py measures it.

:func:`plot` and :func:`sparkline_cell` are free of Textual and Rich state: the tests
check them character by character.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from llmaos_tui.formats import NA, human_bytes

GraphForm = Literal["braille", "block"]
Unit = Literal["percent", "bytes/s", "bytes"]
Colour = Literal["bands", "accent"]

LOW, MID, HIGH = 0.5, 0.85, 1.0
"""Band edges, as :func:`llmaos_tui.formats.level_class` has them."""
EMPTY = -1
"""The band of a cell with nothing drawn in it."""
BLOCKS = " ▁▂▃▄▅▆▇█"
"""Eighths of a cell, from empty to full: the block form and the sparkline."""
SPARK = BLOCKS[1:]
"""The sparkline's eight levels: a zero is the lowest block, a gap a space."""
KEEP = 1024
"""Samples a graph keeps: more than a 400-column braille graph shows."""

# Braille dot bits, bottom dot first: dots 7, 3, 2, 1 on the left, 8, 6, 5, 4 on the right.
_LEFT = (0x40, 0x04, 0x02, 0x01)
_RIGHT = (0x80, 0x20, 0x10, 0x08)


def _braille_table(filled: bool) -> list[list[str]]:
    """[left dots][right dots] -> the character; a blank cell is a plain space (fonts
    without braille draw U+2800 as a box)."""
    table: list[list[str]] = []
    for nl in range(5):
        row: list[str] = []
        for nr in range(5):
            if filled:
                bits = sum(_LEFT[:nl]) + sum(_RIGHT[:nr])
            else:
                bits = (_LEFT[nl - 1] if nl else 0) | (_RIGHT[nr - 1] if nr else 0)
            row.append(chr(0x2800 + bits) if bits else " ")
        table.append(row)
    return table


_AREA = _braille_table(True)
_LINE = _braille_table(False)


def band(frac: float) -> int:
    """0 (low), 1 (mid) or 2 (high) for a fraction of the graph's top."""
    return 0 if frac < LOW else 1 if frac < MID else 2


def scale_top(values: Sequence[float | None], top: float | None, min_top: float) -> float:
    """The value the graph's top line stands for: ``top``, or (``None``) the highest of
    ``values``, never below ``min_top`` (an idle link still has a scale)."""
    if top is not None:
        return top if top > 0 else 1.0
    peak = max((v for v in values if v is not None), default=0.0)
    return max(peak, min_top, 1e-12)


def _tail(values: Sequence[float | None], n: int) -> list[float | None]:
    """The newest ``n`` values, padded on the left with gaps."""
    if n <= 0:
        return []
    tail = list(values[-n:]) if len(values) > n else list(values)
    return [None] * (n - len(tail)) + tail


def capacity(width: int, form: GraphForm) -> int:
    """Samples ``width`` cells show."""
    return max(0, width) * (2 if form == "braille" else 1)


def _levels(
    tail: Sequence[float | None], top: float, full: int, filled: bool
) -> tuple[list[int], list[int]]:
    """Each sample's height in dots (-1: a gap) and its band (:func:`band`)."""
    k = full / top
    zero = 0 if filled else 1  # a line's zero is its bottom dot
    # One comprehension each rather than a loop with branches: the bulk of plot()'s time.
    levels = [
        -1 if v is None else zero if v <= 0 else full if v >= top else max(1, round(v * k))
        for v in tail
    ]
    low, mid = LOW * top, MID * top
    bands = [EMPTY if v is None else 0 if v < low else 1 if v < mid else 2 for v in tail]
    return levels, bands


@functools.lru_cache(maxsize=256)
def _counts(base: int, steps: int, full: int, filled: bool) -> tuple[int, ...]:
    """For one line whose lowest dot is ``base`` + 1: the dots it draws for each level
    (indexed by level + 1, so a gap's -1 is index 0). A table: no branch per cell."""
    out = []
    for level in range(-1, full + 1):
        a = level - base
        if filled:
            out.append(0 if a <= 0 else min(a, steps))
        else:
            out.append(a if 0 < a <= steps else 0)
    return tuple(out)


def plot(
    values: Sequence[float | None],
    width: int,
    height: int,
    top: float = 1.0,
    form: GraphForm = "braille",
    filled: bool = True,
) -> list[tuple[str, list[int]]]:
    """The graph of ``values`` ``width`` cells by ``height`` lines, top line first: each
    line's characters and each cell's band (:func:`band`, or :data:`EMPTY`).

    A sample above 0 gets one dot (braille) or one eighth (block) at least, so a core
    that did anything shows; a gap (``None``) draws nothing in its column. ``filled``
    False draws a line (the top dot of each column) rather than an area; a sample of 0
    is then its bottom dot. A cell's band is that of its highest sample, capped at the
    band of its line's top (band() is monotonic, so that is the band of the value capped
    at the line's top): a tall graph shades by height."""
    if width <= 0 or height <= 0:
        return []
    top = top if top > 0 else 1.0
    braille = form == "braille"
    steps = 4 if braille else 8
    full = steps * height
    n = capacity(width, form)
    levels, sample_bands = _levels(_tail(values, n), top, full, filled)
    table = _AREA if filled else _LINE
    pairs = range(0, n, 2)
    rows: list[tuple[str, list[int]]] = []
    # Comprehensions over the line rather than a loop per cell: this is the whole cost
    # of a graph that changed (bench/graph_render.py).
    for r in range(height):
        counts = _counts((height - 1 - r) * steps, steps, full, filled)
        cap = band((height - r) / height)  # the band of this line's top
        dots = [counts[lv + 1] for lv in levels]
        drawn = [b if d else EMPTY for d, b in zip(dots, sample_bands, strict=True)]
        if braille:
            chars = "".join([table[dots[i]][dots[i + 1]] for i in pairs])
            bands = [min(cap, max(drawn[i], drawn[i + 1])) for i in pairs]
        else:
            chars = "".join([BLOCKS[d] for d in dots])
            bands = [min(cap, b) for b in drawn]
        rows.append((chars, bands))
    return rows


def human_rate(bps: float | None) -> str:
    """Bytes per second in decimal units, as network tools write them: ``12.3 MB/s``."""
    if bps is None:
        return NA
    v = max(0.0, float(bps))
    for unit in ("B/s", "kB/s", "MB/s", "GB/s", "TB/s"):
        if v < 1000 or unit == "TB/s":
            if unit == "B/s":
                return f"{v:.0f} B/s"
            return f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"
        v /= 1000
    return NA  # pragma: no cover - the loop always returns


def format_value(v: float | None, unit: Unit) -> str:
    if v is None:
        return NA
    if unit == "percent":
        return f"{v * 100:.0f}%"
    if unit == "bytes/s":
        return human_rate(v)
    return human_bytes(round(v))


def sparkline_cell(values: Sequence[float | None], width: int, top: float | None = 1.0) -> str:
    """The newest ``width`` values as exactly ``width`` block characters (padded with
    spaces on the left), for a table cell: a zero is ▁, a gap a space. ``top`` None:
    scaled to the highest value shown."""
    tail = _tail(values, width)
    hi = scale_top(tail, top, 1e-12)
    out = []
    for v in tail:
        if v is None:
            out.append(" ")
        else:
            f = min(max(v / hi, 0.0), 1.0)
            out.append(SPARK[min(int(f * len(SPARK)), len(SPARK) - 1)])
    return "".join(out)


def sparkline_text(
    values: Sequence[float | None],
    width: int,
    styles: Sequence[Style],
    top: float | None = 1.0,
) -> Text:
    """:func:`sparkline_cell` as a Text, each character in its value's band's style
    (``styles``: low, mid, high, from the caller's theme: component classes)."""
    s = sparkline_cell(values, width, top)
    tail = _tail(values, width)
    hi = scale_top(tail, top, 1e-12)
    out = Text(no_wrap=True, overflow="crop")
    for ch, v in zip(s, tail, strict=True):
        out.append(ch, styles[band(v / hi)] if v is not None else None)
    return out


def _segments(row: tuple[str, list[int]], styles: Sequence[Style]) -> list[Segment]:
    """One plotted line as segments, a run of cells of one band a segment (an empty
    cell joins the run it is in: a space draws the same in any foreground)."""
    chars, bands = row
    out: list[Segment] = []
    start, cur = 0, -2
    for i, b in enumerate(bands):
        if b in (EMPTY, cur):
            continue
        if cur == -2:
            cur = b
            continue
        out.append(Segment(chars[start:i], styles[cur]))
        start, cur = i, b
    out.append(Segment(chars[start:], styles[cur] if cur >= 0 else styles[0]))
    return out


def _fit(left: str, right: str, width: int) -> tuple[str, str]:
    """``left`` and ``right`` in ``width`` cells: ``left`` cut first."""
    room = width - len(right) - (1 if left else 0)
    if room < 0:
        return "", right[:width]
    return left[:room], right


@dataclass
class Series:
    """One line of figures: its label, scale and unit, and its samples (newest last)."""

    label: str = ""
    top: float | None = 1.0
    """The value of the top line; None: the highest sample shown (autoscale)."""
    unit: Unit = "percent"
    colour: Colour = "bands"
    min_top: float = 1.0
    """The least top an autoscaled series gets (an idle link still draws a scale)."""
    values: list[float | None] = field(default_factory=list)

    @property
    def autoscaled(self) -> bool:
        return self.top is None

    @property
    def current(self) -> float | None:
        return self.values[-1] if self.values else None


class _StyledWidget(Widget):
    """Band styles read once per theme change (a component style is a lookup each)."""

    COMPONENT_CLASSES = {
        "graph--label",
        "graph--low",
        "graph--mid",
        "graph--high",
        "graph--accent",
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._style_gen = 0
        self._styles: tuple[int, dict[str, Style]] = (-1, {})
        self.rebuilds = 0
        """How many times this drew its lines anew (the tests and the benchmark read it)."""

    def notify_style_update(self) -> None:
        self._style_gen += 1
        super().notify_style_update()

    def _style(self, name: str) -> Style:
        """A component's style, with the widget's background (a line-API strip carries
        its own, or the terminal's default shows), read once per theme change."""
        gen, cache = self._styles
        if gen != self._style_gen:
            cache = {}
            self._styles = (self._style_gen, cache)
        got = cache.get(name)
        if got is None:
            got = cache[name] = (
                self.get_component_rich_style(f"graph--{name}") if name else self.rich_style
            )
        return got

    def _band_styles(self, colour: Colour) -> tuple[Style, Style, Style]:
        if colour == "accent":
            a = self._style("accent")
            return a, a, a
        return self._style("low"), self._style("mid"), self._style("high")


_GRAPH_CSS = """
    {name} > .graph--label {{ color: $text-muted; }}
    {name} > .graph--low {{ color: $success; }}
    {name} > .graph--mid {{ color: $warning; }}
    {name} > .graph--high {{ color: $error; }}
    {name} > .graph--accent {{ color: $accent; }}
"""


class Graph(_StyledWidget):
    """One or more series over time, each in its share of the lines, under a top line of
    labels and current values (``header``). Its height comes from CSS (4 by default)."""

    DEFAULT_CSS = "Graph { height: 4; min-height: 1; }" + _GRAPH_CSS.format(name="Graph")

    def __init__(
        self,
        *series: Series,
        form: GraphForm = "braille",
        filled: bool = True,
        header: bool = True,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.series: list[Series] = list(series) or [Series()]
        self.form: GraphForm = form
        self.filled = filled
        self.header = header
        self._version = 0
        self._key: tuple[object, ...] = ()
        self._strips: list[Strip] = []

    # ------------------------------------------------------------------ data in

    def _changed(self) -> None:
        self._version += 1
        self.refresh()

    def set_values(self, values: Sequence[float | None], series: int = 0) -> None:
        """Replace a series' samples (the history ring on attach); nothing is redrawn when
        they are those it has."""
        s = self.series[series]
        new = list(values[-KEEP:])
        if new != s.values:
            s.values = new
            self._changed()

    def append(self, value: float | None, series: int = 0) -> None:
        """One new sample, newest: the graph moves one step left."""
        vals = self.series[series].values
        vals.append(value)
        if len(vals) > 2 * KEEP:
            del vals[:-KEEP]
        self._changed()

    def set_form(self, form: GraphForm) -> None:
        if form != self.form:
            self.form = form
            self._changed()

    def set_label(self, label: str, series: int = 0) -> None:
        if label != self.series[series].label:
            self.series[series].label = label
            self._changed()

    # ------------------------------------------------------------------ drawing

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return (1 if self.header else 0) + len(self.series)

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        key = (self._version, width, height, self._style_gen)
        if key != self._key:
            self._strips = self._build(width, height)
            self._key = key
            self.rebuilds += 1
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(width, self._style(""))

    def _header(self, width: int) -> Strip:
        label = self._style("label")
        segs: list[Segment] = []
        if len(self.series) == 1:
            s = self.series[0]
            value = format_value(s.current, s.unit)
            top = scale_top(s.values[-capacity(width, self.form) :], s.top, s.min_top)
            extra = f"  max {format_value(top, s.unit)}" if s.autoscaled else ""
            if len(s.label) + len(value) + len(extra) + 1 > width:
                extra = ""
            left, value = _fit(s.label, value, width - len(extra))
            pad = width - len(left) - len(value) - len(extra)
            segs.append(Segment(left + " " * pad, label))
            segs.append(Segment(value, self._value_style(s, top)))
            if extra:
                segs.append(Segment(extra, label))
            return Strip(segs)
        used = 0
        for i, s in enumerate(self.series):
            top = scale_top(s.values[-capacity(width, self.form) :], s.top, s.min_top)
            parts = [("  " if i else "", label), (f"{s.label} " if s.label else "", label)]
            parts.append((format_value(s.current, s.unit), self._value_style(s, top)))
            if s.autoscaled:
                parts.append((f" max {format_value(top, s.unit)}", label))
            for text, style in parts:
                cut = text[: max(0, width - used)]
                if cut:
                    segs.append(Segment(cut, style))
                    used += len(cut)
        if used < width:
            segs.append(Segment(" " * (width - used), label))
        return Strip(segs)

    def _value_style(self, s: Series, top: float) -> Style:
        cur = s.current
        if s.colour == "accent" or cur is None:
            return self._style("accent" if s.colour == "accent" else "label")
        return self._band_styles(s.colour)[band(cur / top)]

    def _build(self, width: int, height: int) -> list[Strip]:
        if width <= 0 or height <= 0:
            return []
        strips: list[Strip] = []
        if self.header:
            strips.append(self._header(width))
        rows = height - len(strips)
        n = len(self.series)
        cap = capacity(width, self.form)
        for i, s in enumerate(self.series):
            h = rows // n + (1 if i < rows % n else 0)
            if h <= 0:
                continue
            shown = s.values[-cap:]
            top = scale_top(shown, s.top, s.min_top)
            styles = self._band_styles(s.colour)
            for row in plot(shown, width, h, top, self.form, self.filled):
                strips.append(Strip(_segments(row, styles), width))
        return strips


class GraphGrid(_StyledWidget):
    """Many small graphs of one kind (every core, every GPU), column-major as btop
    numbers its cores, each a top line (label and current value) over ``rows`` lines of
    graph, all drawn by this one widget."""

    DEFAULT_CSS = "GraphGrid { height: auto; }" + _GRAPH_CSS.format(name="GraphGrid")

    def __init__(
        self,
        *,
        cell_width: int = 16,
        rows: int = 2,
        top: float | None = 1.0,
        unit: Unit = "percent",
        colour: Colour = "bands",
        form: GraphForm = "braille",
        min_top: float = 1.0,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.cell_width = max(4, cell_width)
        self.rows = max(1, rows)
        self.top, self.unit, self.colour, self.form = top, unit, colour, form
        self.min_top = min_top
        self.labels: list[str] = []
        self.values: list[list[float | None]] = []
        self._versions: list[int] = []
        self._cells: list[tuple[tuple[object, ...], list[list[Segment]]]] = []
        self._lines: dict[int, tuple[tuple[object, ...], Strip]] = {}

    @property
    def count(self) -> int:
        return len(self.values)

    def _resize(self, n: int) -> None:
        if n == len(self.values):
            return
        self.values = (self.values + [[] for _ in range(n)])[:n]
        self.labels = (self.labels + [str(i) for i in range(len(self.labels), n)])[:n]
        self._versions = (self._versions + [0] * n)[:n]
        self._cells = (self._cells + [((), []) for _ in range(n)])[:n]
        self._lines.clear()
        self.refresh(layout=True)

    def set_labels(self, labels: Sequence[str]) -> None:
        self._resize(len(labels))
        for i, label in enumerate(labels):
            if self.labels[i] != label:
                self.labels[i] = label
                self._versions[i] += 1
        self.refresh()

    def set_histories(self, histories: Sequence[Sequence[float | None]]) -> None:
        """Every graph's samples at once (the history ring on attach)."""
        self._resize(len(histories))
        for i, h in enumerate(histories):
            new = list(h[-KEEP:])
            if new != self.values[i]:
                self.values[i] = new
                self._versions[i] += 1
        self.refresh()

    def append_all(self, sample: Sequence[float | None]) -> None:
        """One new sample for every graph (a host's per-core loads): each moves a step."""
        self._resize(len(sample))
        for i, v in enumerate(sample):
            vals = self.values[i]
            vals.append(v)
            if len(vals) > 2 * KEEP:
                del vals[:-KEEP]
            self._versions[i] += 1
        self.refresh()

    def shape(self, width: int) -> tuple[int, int, int]:
        """(columns, grid rows, cell width) at ``width``."""
        n = max(1, self.count)
        cols = max(1, min(n, (width + 1) // (self.cell_width + 1)))
        grid_rows = math.ceil(n / cols)
        cols = math.ceil(n / grid_rows)
        cell = max(1, (width - (cols - 1)) // cols)
        return cols, grid_rows, cell

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.shape(width)[1] * (self.rows + 1) if self.count else 1

    def _cell(self, i: int, w: int) -> list[list[Segment]]:
        key = (self._versions[i], w, self.rows, self.form, self._style_gen)
        got = self._cells[i]
        if got[0] == key:
            return got[1]
        vals = self.values[i][-capacity(w, self.form) :]
        top = scale_top(vals, self.top, self.min_top)
        styles = self._band_styles(self.colour)
        cur = vals[-1] if vals else None
        value = format_value(cur, self.unit)
        left, value = _fit(self.labels[i], value, w)
        value_style = styles[band(cur / top)] if cur is not None else self._style("label")
        lines = [
            [
                Segment(left + " " * (w - len(left) - len(value)), self._style("label")),
                Segment(value, value_style),
            ]
        ]
        lines.extend(_segments(row, styles) for row in plot(vals, w, self.rows, top, self.form))
        self._cells[i] = (key, lines)
        self.rebuilds += 1
        return lines

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if not self.count:
            return Strip([Segment("waiting for the first sample…", self._style("label"))])
        _cols, grid_rows, cell = self.shape(width)
        gr, line = divmod(y, self.rows + 1)
        if gr >= grid_rows:
            return Strip.blank(width, self._style(""))
        key = (tuple(self._versions[gr::grid_rows]), width, self._style_gen)
        got = self._lines.get(y)
        if got is not None and got[0] == key:
            return got[1]
        segs: list[Segment] = []
        gap = Segment(" ", self._style(""))
        for c, i in enumerate(range(gr, self.count, grid_rows)):
            if c:
                segs.append(gap)
            segs.extend(self._cell(i, cell)[line])
        strip = Strip(segs)
        self._lines[y] = (key, strip)
        return strip
