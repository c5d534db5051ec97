"""Memory, swap and load average of one host: three lines, or one with ``-compact``."""

from __future__ import annotations

from rich.text import Text

from llmaos_agent.protocol import Memory
from llmaos_tui.widgets.lines import LineWidget, Segs
from llmaos_tui.widgets.text import bar, bar_pieces, human_bytes, level_class


class MemoryPanel(LineWidget):
    """Drawn line by line (:class:`~llmaos_tui.widgets.lines.LineWidget`)."""

    COMPONENT_CLASSES = {
        "memory--label",
        "memory--low",
        "memory--mid",
        "memory--high",
        "memory--empty",
    }
    DEFAULT_CSS = """
    MemoryPanel { height: 3; }
    MemoryPanel.-compact { height: 1; }
    MemoryPanel > .memory--label { color: $text-muted; }
    MemoryPanel > .memory--low { color: $success; }
    MemoryPanel > .memory--mid { color: $warning; }
    MemoryPanel > .memory--high { color: $error; }
    MemoryPanel > .memory--empty { color: $text-disabled; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mem: Memory | None = None
        self.load: list[float] | None = None
        self.tasks = 0

    def update_memory(self, mem: Memory | None, load: list[float] | None, tasks: int) -> None:
        if (mem, load, tasks) != (self.mem, self.load, self.tasks):
            self.mem, self.load, self.tasks = mem, load, tasks
            self.lines_changed()

    def frame_key(self) -> tuple[object, ...]:
        return (self.has_class("-compact"),)

    def draw_lines(self) -> list[Segs]:
        # The same pieces, in the same order, as render()'s Text.
        label = "memory--label"
        m = self.mem
        width = self.size.width
        rows = [
            ("Mem ", m.used if m else None, m.total if m else None),
            ("Swap", m.swap_used if m else None, m.swap_total if m else None),
        ]
        compact = self.has_class("-compact")
        bar_ws = [0, 0]
        if compact:  # one line: the bars share what the figures leave
            figs = [f" {human_bytes(u)}/{human_bytes(t)}" for _n, u, t in rows]
            fixed = sum(5 + len(f) + 2 for f in figs) + 13 + len(self._load_text())
            rest = width - fixed - len(str(self.tasks))
            bar_ws = [max(3, rest * 2 // 3), max(3, rest - rest * 2 // 3)]
        out: list[Segs] = []
        line = self.line()
        for i, (name, used, total) in enumerate(rows):
            frac = used / total if used is not None and total else None
            figures = f" {human_bytes(used)}/{human_bytes(total)}"
            fill = level_class(frac, "memory")
            line.add(name + " ", label)
            bar_w = bar_ws[i] if compact else max(1, width - 5 - len(figures))
            for text, filled in bar_pieces(frac, bar_w):
                line.add(text, fill if filled else "memory--empty")
            line.add(figures)
            if compact:
                line.add("  ")
            else:
                out.append(line.done(len(out)))
                line = self.line()
        line.add("Load ", label)
        line.add(self._load_text())
        line.add("  Tasks ", label)
        line.add(str(self.tasks))
        out.append(line.done(len(out)))
        return out

    def render(self) -> Text:
        """The panel as a Rich Text (what render_line draws; for print() and tests)."""
        label = self.get_component_rich_style("memory--label")
        empty = self.get_component_rich_style("memory--empty")
        out = Text(no_wrap=True, overflow="crop")
        m = self.mem
        width = self.size.width
        rows = [
            ("Mem ", m.used if m else None, m.total if m else None),
            ("Swap", m.swap_used if m else None, m.swap_total if m else None),
        ]
        compact = self.has_class("-compact")
        bar_ws = [0, 0]
        if compact:  # one line: the bars share what the figures leave
            figs = [f" {human_bytes(u)}/{human_bytes(t)}" for _n, u, t in rows]
            fixed = sum(5 + len(f) + 2 for f in figs) + 13 + len(self._load_text())
            rest = width - fixed - len(str(self.tasks))
            bar_ws = [max(3, rest * 2 // 3), max(3, rest - rest * 2 // 3)]
        for i, (name, used, total) in enumerate(rows):
            frac = used / total if used is not None and total else None
            figures = f" {human_bytes(used)}/{human_bytes(total)}"
            fill = self.get_component_rich_style(level_class(frac, "memory"))
            out.append(name + " ", label)
            bar_w = bar_ws[i] if compact else max(1, width - 5 - len(figures))
            out.append_text(bar(frac, bar_w, fill, empty))
            out.append(figures + ("  " if compact else "\n"))
        out.append("Load ", label)
        out.append(self._load_text())
        out.append("  Tasks ", label)
        out.append(str(self.tasks))
        return out

    def _load_text(self) -> str:
        return " ".join(f"{x:.2f}" for x in self.load) if self.load else "n/a"
