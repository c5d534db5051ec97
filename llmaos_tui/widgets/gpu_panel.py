"""Every NVIDIA GPU of one host: load, memory, temperature, power and its processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from llmaos_agent.protocol import GpuSample, Proc
from llmaos_agent.safetext import clean
from llmaos_tui.widgets.text import NA, bar, human_bytes, level_class


class GpuPanel(Widget):
    COMPONENT_CLASSES = {
        "gpu--label",
        "gpu--low",
        "gpu--mid",
        "gpu--high",
        "gpu--empty",
        "gpu--error",
    }
    DEFAULT_CSS = """
    GpuPanel { height: auto; }
    GpuPanel > .gpu--label { color: $text-muted; }
    GpuPanel > .gpu--low { color: $success; }
    GpuPanel > .gpu--mid { color: $warning; }
    GpuPanel > .gpu--high { color: $error; }
    GpuPanel > .gpu--empty { color: $text-disabled; }
    GpuPanel > .gpu--error { color: $error; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.gpus: list[GpuSample] = []
        self.reason: str | None = None
        self.names: dict[int, str] = {}

    def update_gpus(
        self, gpus: Sequence[GpuSample], reason: str | None, procs: Mapping[int, Proc]
    ) -> None:
        # Process names are their owners' text: cleaned once here, drawn as they are.
        names = {p.pid: clean(procs[p.pid].name) for g in gpus for p in g.procs if p.pid in procs}
        new = list(gpus)
        if (new, reason, names) == (self.gpus, self.reason, self.names):
            return
        relayout = len(new) != len(self.gpus)
        self.gpus, self.reason, self.names = new, reason, names
        self.refresh(layout=relayout)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, 2 * len(self.gpus))

    def render(self) -> Text:
        label = self.get_component_rich_style("gpu--label")
        empty = self.get_component_rich_style("gpu--empty")
        out = Text(no_wrap=True, overflow="crop")
        if not self.gpus:
            out.append("GPUs ", label)
            out.append(f"none ({clean(self.reason)})" if self.reason else "none")
            return out
        width = self.size.width
        for i, g in enumerate(self.gpus):
            if i:
                out.append("\n")
            out.append(f"GPU{g.index} ", label)
            if g.error:
                err = clean(f"{g.name}: {g.error}")  # the driver's and NVML's text
                out.append(err, self.get_component_rich_style("gpu--error"))
                out.append("\n")
                continue
            mem_frac = g.mem_used / g.mem_total if g.mem_used is not None and g.mem_total else None
            util_fill = self.get_component_rich_style(level_class(g.util, "gpu"))
            mem_fill = self.get_component_rich_style(level_class(mem_frac, "gpu"))
            temp = f"{g.temp_c}°C" if g.temp_c is not None else NA
            power = f"{g.power_w:.0f}W" if g.power_w is not None else NA
            if g.power_limit_w is not None:
                power += f"/{g.power_limit_w:.0f}W"
            util = f"{g.util * 100:3.0f}%" if g.util is not None else " n/a"
            mem = f"{human_bytes(g.mem_used)}/{human_bytes(g.mem_total)}"
            tail = f"  {temp}  {power}"
            bar_w = max(4, (width - 5 - 4 - 6 - len(mem) - len(tail) - 2) // 2)
            out.append_text(bar(g.util, bar_w, util_fill, empty))
            out.append(util, util_fill)
            out.append("  mem ", label)
            out.append_text(bar(mem_frac, bar_w, mem_fill, empty))
            out.append(f" {mem}{tail}")
            out.append("\n     ", label)
            out.append(clean(g.name)[:30], label)
            procs = ", ".join(
                f"{p.pid} {self.names.get(p.pid, '?')} {human_bytes(p.used_mem)}" for p in g.procs
            )
            out.append(f"  {procs or 'no processes'}")
        return out
