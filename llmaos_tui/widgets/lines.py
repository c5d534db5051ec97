"""Widgets that draw line by line: a panel's lines as cached Strips, and only the lines
whose text or colours changed repainted.

A panel that returns a Rich Text from ``render()`` is converted by Textual on every
refresh (Text -> Content -> wrapped lines -> Strips, a Style with a selection offset made
for every span), and every line of it is composed again; on a host screen the core bars,
GPUs, memory and β change every second, and that conversion was a quarter of the
console's time (docs/BENCHMARKS.md, issue 12). A :class:`LineWidget` builds its lines
as Segments itself, keeps one Strip a line, and on new data repaints only the lines that
differ, so an unchanged line costs a comparison.

The Segments are those Textual's Content path gives for the same Text, segment for
segment (one per styled piece, unstyled runs joined) and style for style: the widget's
visual style, then the component's, with the selection offset Content puts in each
style's meta (mouse selection keeps working, and two neighbouring pieces of one colour
stay two segments, as a screenshot has them). Each style is made once per position and
theme, so an unchanged line is the same objects. tests/test_line_widgets.py holds the
panels to Textual's drawing of their Text.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.selection import Selection
from textual.strip import Strip
from textual.style import Style as VisualStyle
from textual.widget import Widget
from typing_extensions import Self

Segs = tuple[Segment, ...]


StyleAt = Callable[[str | None, int, int], Style]


class Line:
    """One line being built, as Rich ``Text.append`` builds a Text: a piece per styled
    append, runs of unstyled text joined into one (Content draws one segment of them);
    styles are given by component class name (None: unstyled) and made in :meth:`done`."""

    __slots__ = ("_pieces", "_style_at", "length")

    def __init__(self, style_at: StyleAt) -> None:
        self._style_at = style_at
        self._pieces: list[tuple[str, str | None]] = []
        self.length = 0
        """Characters so far (Content's offsets count characters)."""

    def add(self, text: str, component: str | None = None) -> None:
        """Append ``text`` in ``component``'s style (None: the widget's own)."""
        if not text:
            return
        self.length += len(text)
        pieces = self._pieces
        if component is None and pieces and pieces[-1][1] is None:
            pieces[-1] = (pieces[-1][0] + text, None)
        else:
            pieces.append((text, component))

    def extend(self, other: Line) -> None:
        """Append what ``other`` holds (as ``Text.append_text``)."""
        for text, component in other._pieces:
            self.add(text, component)

    def fit(self, width: int) -> None:
        """Crop to ``width`` cells or pad with unstyled spaces to it (``Text.truncate(width,
        pad=True)`` of a cropping Text)."""
        length = sum(cell_len(text) for text, _c in self._pieces)
        if length > width:
            kept: list[tuple[str, str | None]] = []
            room = width
            for text, component in self._pieces:
                if room <= 0:
                    break
                n = cell_len(text)
                kept.append((text if n <= room else set_cell_size(text, room), component))
                room -= n
            self._pieces = kept
            self.length = sum(len(text) for text, _c in kept)
        elif length < width:
            self.add(" " * (width - length))

    def done(self, y: int) -> Segs:
        """The segments of line ``y``; an empty line is one empty segment, as Content
        gives."""
        style_at = self._style_at
        if not self._pieces:
            return (Segment("", style_at(None, 0, y)),)
        out = []
        x = 0
        for text, component in self._pieces:
            out.append(Segment(text, style_at(component, x, y)))
            x += len(text)
        return tuple(out)


class LineWidget(Widget):
    """A widget whose subclass draws a frame as lines of Segments (:meth:`draw_lines`);
    this keeps them as Strips and repaints only the changed ones."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._style_gen = 0
        self._style_key: tuple[int, object] = (-1, None)
        self._spans: dict[str | None, VisualStyle] = {}
        self._at: dict[tuple[str | None, int, int], Style] = {}
        self._frame: tuple[object, ...] | None = None
        self._lines: list[Segs] = []
        self._strips: list[Strip] = []
        self.redrawn_lines = 0
        """Lines drawn anew since mounting (tests and the benchmark read it)."""
        self._selected = False

    # ------------------------------------------------------------------ subclass

    def draw_lines(self) -> list[Segs]:
        """The whole frame at the current size, a tuple of Segments a line."""
        raise NotImplementedError

    def frame_key(self) -> tuple[object, ...]:
        """What, besides the data, decides how the lines are laid out (the size, a form
        or class); a change draws every line again."""
        return ()

    # ------------------------------------------------------------------ styles

    def notify_style_update(self) -> None:
        self._style_gen += 1
        super().notify_style_update()

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> Self:
        # A whole repaint is Textual's word that styles may have changed (it drops its own
        # component style cache then; a theme change updates the component styles and
        # calls only this): read them again and draw every line.
        if repaint and not regions:
            self._style_gen += 1
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def _check_styles(self) -> None:
        """Styles made for another theme (or CSS) are dropped before a frame is drawn."""
        visual = self.visual_style
        key = (self._style_gen, visual)
        if key != self._style_key:
            self._style_key = key
            self._spans = {}
            self._at = {}

    def _span_style(self, component: str | None) -> VisualStyle:
        """The style Content gives a span of ``component``'s style (None: unstyled text)
        over this widget's visual style."""
        got = self._spans.get(component)
        if got is None:
            visual = self.visual_style
            if component is None:
                got = visual + visual
            else:
                rich = self.get_component_rich_style(component)
                got = visual + (visual + VisualStyle.from_rich_style(rich, self.app.ansi_theme))
            self._spans[component] = got
        return got

    def style_at(self, component: str | None, x: int, y: int) -> Style:
        """The Rich style of a segment at (x, y), as Content makes it: with the selection
        offset in its meta (so mouse selection works, and two neighbouring pieces of one
        colour stay two segments, as the snapshots have them). Made once per position."""
        at = self._at
        key = (component, x, y)
        got = at.get(key)
        if got is None:
            if len(at) > 20_000:  # sizes and forms come and go: keep what this one uses
                at.clear()
            got = at[key] = self._span_style(component).rich_style_with_offset(x, y)
        return got

    def _draw(self) -> list[Segs]:
        self._check_styles()
        return self.draw_lines()

    def line(self) -> Line:
        return Line(self.style_at)

    # ------------------------------------------------------------------ drawing

    def _key(self) -> tuple[object, ...]:
        # The outer size, not .size: that finds the widget's region on the screen, at
        # every line drawn; the content size follows from it and the styles (gen).
        return (self.outer_size, self._style_gen, self.visual_style, *self.frame_key())

    def lines_changed(self) -> None:
        """The data changed: draw the frame and repaint the lines that differ (all of
        them when the size, form or theme changed since the last frame)."""
        if not self.is_mounted or not self.outer_size.area or self._frame != self._key():
            self._frame = None
            self.refresh()
            return
        new = self._draw()
        old = self._lines
        if len(new) != len(old):
            self._frame = None
            self.refresh()
            return
        width = self.size.width
        dirty = []
        for y, (was, now) in enumerate(zip(old, new, strict=True)):
            if was != now:
                self._strips[y] = Strip(now)
                dirty.append(Region(0, y, width, 1))
        self._lines = new
        self.redrawn_lines += len(dirty)
        if dirty:
            self.refresh(*dirty)

    def selection_updated(self, selection: Selection | None) -> None:
        # While text is selected here Textual draws it (the selection's highlight).
        self._selected = selection is not None
        super().selection_updated(selection)

    def render_line(self, y: int) -> Strip:
        if self._selected:
            return super().render_line(y)
        key = self._key()
        if self._frame != key:
            self._lines = self._draw()
            self._strips = [Strip(segs) for segs in self._lines]
            self._frame = key
            self.redrawn_lines += len(self._lines)
        if 0 <= y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width, self.visual_style.rich_style)
