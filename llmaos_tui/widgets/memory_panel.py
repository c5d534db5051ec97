"""Memory, swap and load average of one host."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from llmaos_agent.protocol import Memory
from llmaos_tui.widgets.text import bar, human_bytes, level_class


class MemoryPanel(Widget):
    COMPONENT_CLASSES = {
        "memory--label",
        "memory--low",
        "memory--mid",
        "memory--high",
        "memory--empty",
    }
    DEFAULT_CSS = """
    MemoryPanel { height: 3; }
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
            self.refresh()

    def render(self) -> Text:
        label = self.get_component_rich_style("memory--label")
        empty = self.get_component_rich_style("memory--empty")
        out = Text(no_wrap=True, overflow="crop")
        m = self.mem
        width = self.size.width
        rows = [
            ("Mem ", m.used if m else None, m.total if m else None),
            ("Swap", m.swap_used if m else None, m.swap_total if m else None),
        ]
        for name, used, total in rows:
            frac = used / total if used is not None and total else None
            figures = f" {human_bytes(used)}/{human_bytes(total)}"
            fill = self.get_component_rich_style(level_class(frac, "memory"))
            out.append(name + " ", label)
            out.append_text(bar(frac, max(1, width - 5 - len(figures)), fill, empty))
            out.append(figures + "\n")
        load = " ".join(f"{x:.2f}" for x in self.load) if self.load else "n/a"
        out.append("Load ", label)
        out.append(load)
        out.append("  Tasks ", label)
        out.append(str(self.tasks))
        return out
