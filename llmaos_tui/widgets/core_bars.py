"""Every logical core's load as a bar, all drawn by one widget.

One widget drawing every bar costs a fraction of one widget per bar
(DESIGN.md, "The wire"); the bars wrap into as many columns as fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from llmaos_tui.widgets.text import bar, level_class

CELL_MIN = 18


class CoreBars(Widget):
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

    @property
    def bar_count(self) -> int:
        return len(self.loads)

    def update_loads(self, loads: Sequence[float]) -> None:
        new = list(loads)
        if new == self.loads:
            return
        relayout = len(new) != len(self.loads)
        self.loads = new
        self.refresh(layout=relayout)

    def _columns(self, width: int) -> int:
        n = max(1, len(self.loads))
        return max(1, min(n, (width + 1) // (CELL_MIN + 1)))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, math.ceil(len(self.loads) / self._columns(width)))

    def render(self) -> Text:
        n = len(self.loads)
        if not n:
            return Text(
                "waiting for the first sample…", self.get_component_rich_style("corebars--label")
            )
        width = self.size.width
        cols = self._columns(width)
        rows = math.ceil(n / cols)
        cell = (width - (cols - 1)) // cols
        label_w = len(str(n - 1))
        bar_w = max(1, cell - label_w - 6)
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
                out.append(f"{i:>{label_w}} ", label)
                out.append_text(bar(load, bar_w, fill, empty))
                out.append(f"{load * 100:4.0f}%", fill)
        return out
