"""Every core and GPU of every host at once, one coloured cell each.

One widget draws the whole fleet (a widget per cell, or per host, would cost
far more; DESIGN.md, "The wire"). It uses Textual's line API: each host's line
segments are built once per sample and cached, a refresh joins them into
strips, and only the lines on screen are handed to the compositor. Going through
a rich Text instead costs about half a second for 200 hosts x 72 cells, in the
conversion of its ~13,000 spans; the strips cost a few milliseconds.

Layout: a host is a label and its cells (cores, then a mark and its GPUs), one host a
row, its cells wrapping to the widget's width when they do not fit one line. A cursor
(up/down, Home/End, PgUp/PgDn, a click) marks one host's label; Enter opens it
(:class:`HeatMap.Selected`). The cursor stays on its host when the order changes.
The colour ramp runs from ``$success`` through ``$warning`` to ``$error``,
taken from the theme through the component classes; nothing is hard-coded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.color import Color
from textual.geometry import Region, Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from llmaos_agent.safetext import clean
from llmaos_tui.fleet.state import HostState, HostStatus

CORE = "█"
GPU = "▓"
GPU_MARK = "│"
LABEL_MAX = 16
GAP = 2
RAMP_STEPS = 16
LEGEND_STEPS = 10

Line = list[Segment]


@dataclass
class _Entry:
    """A host's drawn lines and what they were drawn from."""

    key: tuple[object, ...]
    sample: object
    lines: list[Line]


def _cells(h: HostState) -> tuple[list[float], list[float | None]]:
    if not h.up or h.sample is None:
        return [], []
    return list(h.sample.cpu), [g.util for g in h.sample.gpus]


def _stamp(h: HostState) -> tuple[float, int]:
    """Which sample a host is at (ids of freed samples can be reused; times are not)."""
    return (-1.0, -1) if h.sample is None else (h.sample.t, h.sample.seq)


def cell_count(h: HostState) -> int:
    """How many cells the map draws for a host: its cores and GPUs when it reports."""
    cores, gpus = _cells(h)
    return len(cores) + (len(gpus) + 1 if gpus else 0)  # the GPU mark takes a cell


class HeatMap(Widget):
    COMPONENT_CLASSES = {
        "heatmap--label",
        "heatmap--stale",
        "heatmap--down",
        "heatmap--mark",
        "heatmap--low",
        "heatmap--mid",
        "heatmap--high",
        "heatmap--unknown",
        "heatmap--cursor",
    }
    BINDINGS = [
        Binding("enter", "open", "Open host", id="heatmap.open"),
        Binding("up", "cursor(-1)", "Up", show=False, id="heatmap.up"),
        Binding("down", "cursor(1)", "Down", show=False, id="heatmap.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="heatmap.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="heatmap.page_down"),
        Binding("home", "cursor(-1000000)", "First host", show=False, id="heatmap.first"),
        Binding("end", "cursor(1000000)", "Last host", show=False, id="heatmap.last"),
    ]
    can_focus = True
    DEFAULT_CSS = """
    HeatMap { height: auto; min-height: 1; padding: 0 1; }
    HeatMap > .heatmap--label { color: $text; }
    HeatMap > .heatmap--stale { color: $warning; }
    HeatMap > .heatmap--down { color: $text-disabled; }
    HeatMap > .heatmap--mark { color: $text-muted; }
    HeatMap > .heatmap--low { color: $success; }
    HeatMap > .heatmap--mid { color: $warning; }
    HeatMap > .heatmap--high { color: $error; }
    HeatMap > .heatmap--unknown { color: $text-disabled; }
    HeatMap > .heatmap--cursor {
        background: $block-cursor-blurred-background; color: $block-cursor-blurred-foreground;
    }
    HeatMap:focus > .heatmap--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground;
        text-style: bold;
    }
    """

    class Selected(Message):
        """Enter (or a click on the cursor's host) on a host: open it."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    class Highlighted(Message):
        """The cursor moved to a host."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._hosts: list[HostState] = []
        self._signature: list[tuple[str, HostStatus, str, tuple[float, int], int]] = []
        self._cache: dict[str, _Entry] = {}
        self._ramp: list[Style] = []
        self._ramp_key: tuple[Style, ...] = ()
        self._strips: list[Strip] | None = None
        self._strips_width = -1
        self.cursor_host: str | None = None
        """The host the cursor is on (kept across re-sorts and filters)."""

    # ---------------------------------------------------------------- data

    def update_hosts(self, hosts: Iterable[HostState]) -> None:
        """Show these hosts in this order; repaint only when something drawn changed."""
        self._hosts = list(hosts)
        signature = [(h.name, h.status, h.reason, _stamp(h), cell_count(h)) for h in self._hosts]
        if signature == self._signature:
            return
        shape = [(s[0], s[4]) for s in signature]  # what the height depends on
        relayout = shape != [(s[0], s[4]) for s in self._signature]
        self._signature = signature
        names = {h.name for h in self._hosts}
        for gone in [n for n in self._cache if n not in names]:
            del self._cache[gone]
        if self.cursor_host not in names:
            self.cursor_host = self._hosts[0].name if self._hosts else None
        self._strips = None
        self.refresh(layout=relayout)

    @property
    def host_names(self) -> list[str]:
        return [h.name for h in self._hosts]

    # -------------------------------------------------------------- cursor

    @property
    def cursor_index(self) -> int:
        names = self.host_names
        return names.index(self.cursor_host) if self.cursor_host in names else 0

    def move_cursor(self, index: int) -> None:
        if not self._hosts:
            return
        index = min(max(index, 0), len(self._hosts) - 1)
        name = self._hosts[index].name
        if name != self.cursor_host:
            self.cursor_host = name
            self.post_message(self.Highlighted(name))
        self._strips = None
        self.refresh()
        self._scroll_to_cursor()

    def _host_top(self, index: int) -> tuple[int, int]:
        """(the first line of host ``index``, its number of lines), the legend above."""
        _, per_line, _, _ = self._rows(self.size.width or 80)
        heights = [self._lines_of(h, per_line) for h in self._hosts]
        return 1 + sum(heights[:index]), heights[index]

    def _scroll_to_cursor(self) -> None:
        parent = self.parent
        if not isinstance(parent, Widget) or not self._hosts:
            return
        top, height = self._host_top(self.cursor_index)
        y = self.virtual_region.y + top
        parent.scroll_to_region(Region(0, y, 1, height), animate=False)

    def action_cursor(self, step: int) -> None:
        self.move_cursor(self.cursor_index + step)

    def action_page(self, pages: int) -> None:
        parent = self.parent
        page = parent.size.height if isinstance(parent, Widget) else self.size.height
        self.move_cursor(self.cursor_index + pages * max(1, page - 2))

    def action_open(self) -> None:
        if self.cursor_host is not None:
            self.post_message(self.Selected(self.cursor_host))

    def on_click(self, event: events.Click) -> None:
        _, per_line, _, _ = self._rows(self.size.width)
        line = 1
        for i, h in enumerate(self._hosts):
            n = self._lines_of(h, per_line)
            if line <= event.y < line + n:
                again = i == self.cursor_index
                self.move_cursor(i)
                if again or event.chain > 1:  # a click on the cursor's host opens it
                    self.action_open()
                return
            line += n

    # -------------------------------------------------------------- layout

    def _label_width(self) -> int:
        longest = max((len(clean(h.name)) for h in self._hosts), default=4)
        return min(longest, LABEL_MAX) + 1

    def _geometry(self, width: int) -> tuple[int, int, int]:
        """(label width, cells per line, hosts per line: one) for a content width."""
        label_w = self._label_width()
        return label_w, max(1, width - label_w), 1

    def _lines_of(self, h: HostState, per_line: int) -> int:
        n = cell_count(h)
        return max(1, math.ceil(n / per_line)) if n else 1

    def _rows(self, width: int) -> tuple[int, int, int, int]:
        """(label width, cells per line, hosts per line, lines of hosts)."""
        label_w, per_line, across = self._geometry(width)
        if across > 1:
            return label_w, per_line, across, math.ceil(len(self._hosts) / across)
        return label_w, per_line, 1, sum(self._lines_of(h, per_line) for h in self._hosts)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if not self._hosts:
            return 2
        return 1 + self._rows(width)[3]  # the legend, then the hosts

    # -------------------------------------------------------------- colour

    def _check_ramp(self) -> None:
        """Rebuild the colour ramp when the theme (or CSS) changed it."""
        names = ("low", "mid", "high", "label", "stale", "down", "mark", "unknown")
        ends = (*(self.get_component_rich_style(f"heatmap--{n}") for n in names), self.rich_style)
        if ends == self._ramp_key:
            return
        self._ramp_key = ends
        low, mid, high = (Color.from_rich_color(s.color) for s in ends[:3])
        base = self.rich_style
        ramp = []
        for i in range(RAMP_STEPS):
            t = i / (RAMP_STEPS - 1)
            c = low.blend(mid, t * 2) if t <= 0.5 else mid.blend(high, (t - 0.5) * 2)
            ramp.append(base + Style(color=c.rich_color))
        self._ramp = ramp
        self._cache.clear()
        self._strips = None

    def _level(self, load: float) -> int:
        return min(max(round(load * (RAMP_STEPS - 1)), 0), RAMP_STEPS - 1)

    # ------------------------------------------------------------- drawing

    def _host_lines(self, h: HostState, label_w: int, per_line: int, across: int) -> list[Line]:
        key = (h.status, h.reason, label_w, per_line, across > 1, h.name == self.cursor_host)
        entry = self._cache.get(h.name)
        if entry is not None and entry.key == key and entry.sample is h.sample:
            return entry.lines
        lines = self._draw_host(h, label_w, per_line)
        self._cache[h.name] = _Entry(key, h.sample, lines)
        return lines

    def _draw_host(self, h: HostState, label_w: int, per_line: int) -> list[Line]:
        # Segments go to the terminal as they are: host text is cleaned here, first.
        shown = clean(h.name)
        name = shown if len(shown) <= LABEL_MAX else shown[: LABEL_MAX - 1] + "…"
        cores, gpus = _cells(h)
        if not cores and not gpus:
            dim = self.get_component_rich_style("heatmap--down")
            status = h.status.value + (f": {clean(h.reason)}" if h.reason else "")
            if h.status is HostStatus.UP:
                status = "waiting for the first sample"
            shown_label = Segment(name.ljust(label_w), self._label_style(h, dim))
            return [[shown_label, Segment(status[:per_line].ljust(per_line), dim)]]
        label_class = "heatmap--stale" if h.status is HostStatus.STALE else "heatmap--label"
        label = self.get_component_rich_style(label_class)
        first = self._label_style(h, label)
        mark = self.get_component_rich_style("heatmap--mark")
        unknown = self.get_component_rich_style("heatmap--unknown")
        ramp, top = self._ramp, RAMP_STEPS - 1
        # A style per cell, then one segment per run of equal styles.
        styles = [ramp[min(max(round(v * top), 0), top)] for v in cores]
        glyphs = CORE * len(cores)
        if gpus:
            glyphs += GPU_MARK + GPU * len(gpus)
            styles.append(mark)
            styles.extend(
                unknown if u is None else ramp[min(max(round(u * top), 0), top)] for u in gpus
            )
        lines: list[Line] = []
        for start in range(0, len(glyphs), per_line):
            end = min(start + per_line, len(glyphs))
            head = name.ljust(label_w) if not start else " " * label_w
            line = [Segment(head, first if not start else label)]
            line.extend(_runs(glyphs, styles, start, end))
            if end - start < per_line:
                line.append(Segment(" " * (per_line - (end - start)), label))
            lines.append(line)
        return lines

    def _label_style(self, h: HostState, style: Style) -> Style:
        if h.name != self.cursor_host:
            return style
        return style + self.get_component_rich_style("heatmap--cursor")

    def _legend(self) -> Line:
        muted = self.get_component_rich_style("heatmap--mark")
        line = [Segment("load 0% ", muted)]
        for i in range(LEGEND_STEPS):
            style = self._ramp[self._level(i / (LEGEND_STEPS - 1))]
            line.append(Segment(" ", Style(bgcolor=style.color)))
        line.append(
            Segment(f" 100%   cores, then {GPU_MARK} GPUs · one cell each · Enter opens", muted)
        )
        return line

    def lines(self) -> list[Strip]:
        """Every line of the map (the legend first), as drawn at the current width."""
        self._check_ramp()
        width = self.size.width
        if self._strips is not None and self._strips_width == width:
            return self._strips
        base = self.rich_style
        out: list[Line] = [self._legend()]
        if not self._hosts:
            out.append(
                [Segment("no hosts to show", self.get_component_rich_style("heatmap--down"))]
            )
        else:
            label_w, per_line, across, rows = self._rows(width)
            if across == 1:
                for h in self._hosts:
                    out.extend(self._host_lines(h, label_w, per_line, across))
            else:
                blocks = [self._host_lines(h, label_w, per_line, across)[0] for h in self._hosts]
                gap = Segment(" " * GAP, base)
                for r in range(rows):
                    line: Line = []
                    for c in range(across):
                        i = c * rows + r  # down, then across
                        if i >= len(blocks):
                            break
                        if c:
                            line.append(gap)
                        line.extend(blocks[i])
                    out.append(line)
        self._strips = [Strip(line).adjust_cell_length(width, base) for line in out]
        self._strips_width = width
        return self._strips

    @property
    def text(self) -> str:
        """The map as plain text, a line per line (for tests and the curious)."""
        return "\n".join(strip.text for strip in self.lines())

    def render_line(self, y: int) -> Strip:
        lines = self.lines()
        if 0 <= y < len(lines):
            return lines[y]
        return Strip.blank(self.size.width, self.rich_style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = None

    def render(self) -> Text:  # pragma: no cover - render_line draws; this is for print()
        return Text(self.text)


def _runs(glyphs: str, styles: Sequence[Style], start: int, end: int) -> Line:
    """Segments for glyphs[start:end], one per run of the same style."""
    segments: Line = []
    run = start
    for i in range(start + 1, end + 1):
        if i == end or styles[i] is not styles[run]:
            segments.append(Segment(glyphs[run:i], styles[run]))
            run = i
    return segments
