"""Every NVIDIA GPU of one host: load, memory, temperature, power and its processes.

Three forms: ``detail`` (two lines a GPU: bars for load and memory, temperature, power,
then its name and processes) where the screen gives the height, else ``compact`` (one
line a GPU, packed into as many columns as fit), and where even that would take the
process table's lines (16 GPUs on a big host in a small terminal), ``tiny``: index, load
bar and percent, in narrower columns. :func:`rows` says how tall each is.

In the detail form, where the bars are wide (:data:`SPARK_BAR`), each bar gives part of
its width to a sparkline of its history (utilisation, memory used) from the host's
per-GPU rings (``HostIO.gpu_util``, ``gpu_mem``, full from the agent's history at
attach), as nvitop draws them; and each process says its share of the GPU's SM time and
memory bandwidth (NVML's process utilisation samples, protocol 6) where the device
reports them. The height is the same with or without them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.geometry import Size

from llmaos_agent.protocol import GpuSample, Proc
from llmaos_agent.safetext import clean
from llmaos_tui.fleet.host_io import POINTS, HostIO
from llmaos_tui.widgets.lines import Line, LineWidget, Segs
from llmaos_tui.widgets.spark import spark_pieces
from llmaos_tui.widgets.text import NA, bar, bar_pieces, human_bytes, level_class

COMPACT_MIN = 38
"""The narrowest column of the compact form."""
TINY_MIN = 14
"""The narrowest column of the tiny form: "GPU15 ███ 97%"."""
SPARK_BAR = 24
"""The narrowest detail bar that gives part of itself to a history sparkline."""


def split(bar_w: int, io: HostIO | None) -> tuple[int, int]:
    """(bar, sparkline) widths of a detail bar ``bar_w`` wide (with the space between
    them): half each from :data:`SPARK_BAR` on, else (or with no history) the bar alone."""
    if bar_w < SPARK_BAR or io is None:
        return bar_w, 0
    spark = min(POINTS, bar_w // 2)
    return bar_w - spark - 1, spark


def proc_text(
    pid: int, name: str, used_mem: int | None, sm: float | None, mem: float | None
) -> str:
    """One GPU process as the detail form lists it: pid, name, memory, and its SM and
    memory-bandwidth shares where the device reports them (nvitop's SM and MEM)."""
    out = f"{pid} {name} {human_bytes(used_mem)}"
    if sm is not None:
        out += f" sm {sm * 100:.0f}%"
    if mem is not None:
        out += f" gmbw {mem * 100:.0f}%"
    return out


def columns(n: int, width: int, tiny: bool = False) -> int:
    """Columns of the compact (or tiny) form for ``n`` GPUs ``width`` wide."""
    cell = TINY_MIN if tiny else COMPACT_MIN
    return max(1, min(max(1, n), (width + 2) // (cell + 2)))


def rows(n: int, width: int, detail: bool, tiny: bool = False) -> int:
    """Lines the panel needs for ``n`` GPUs (one line says there are none)."""
    if n == 0:
        return 1
    return 2 * n if detail else math.ceil(n / columns(n, width, tiny))


class GpuPanel(LineWidget):
    """Drawn line by line (:class:`~llmaos_tui.widgets.lines.LineWidget`): only the lines
    whose GPUs show new figures are repainted."""

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
        self.detail = True
        """Two lines a GPU (the screen turns it off where there is no room)."""
        self.tiny = False
        """The tiny form where the compact one would not leave the process table its share."""
        self.io: HostIO | None = None
        """The host's histories (the per-GPU rings the sparklines draw)."""
        self._io_version = -1
        self.spark_width = 0
        """Each sparkline's width in the last frame drawn (0: none shown)."""

    def update_gpus(
        self,
        gpus: Sequence[GpuSample],
        reason: str | None,
        procs: Mapping[int, Proc],
        io: HostIO | None = None,
        owners: Mapping[int, str] | None = None,
    ) -> None:
        """The latest GPUs, and (``io``) the host's histories for the sparklines: a new
        sample in them redraws only where sparklines are shown. ``owners``: pid ->
        "req:ID" / "ctr:NAME" (llmaos_tui.fleet.gpu_owners, cleaned there), shown after
        the process's name."""
        # Process names are their owners' text: cleaned once here, drawn as they are.
        names = {p.pid: clean(procs[p.pid].name) for g in gpus for p in g.procs if p.pid in procs}
        for pid, owner in (owners or {}).items():
            names[pid] = f"{names.get(pid, '?')} {owner}"
        new = list(gpus)
        version = io.version if io is not None else -1
        # A history given or taken away changes the layout; a new sample in it matters
        # only where sparklines are drawn.
        moved = io is not self.io or (self.spark_width > 0 and version != self._io_version)
        self.io, self._io_version = io, version
        if (new, reason, names) == (self.gpus, self.reason, self.names) and not moved:
            return
        relayout = len(new) != len(self.gpus)
        self.gpus, self.reason, self.names = new, reason, names
        if relayout:
            self.refresh(layout=True)
        self.lines_changed()

    def set_detail(self, detail: bool, tiny: bool = False) -> None:
        tiny = tiny and not detail
        if (detail, tiny) != (self.detail, self.tiny):
            self.detail, self.tiny = detail, tiny
            self.refresh(layout=True)

    def frame_key(self) -> tuple[object, ...]:
        return (len(self.gpus), self.detail, self.tiny)

    def history(self, pos: int) -> tuple[list[float | None], list[float | None]]:
        """The utilisation and memory history of the ``pos``-th GPU of the sample, oldest
        first (empty without one, or when the rings' shape is not this sample's)."""
        io = self.io
        n = len(self.gpus)
        if io is None or io.gpu_util.width != n or io.gpu_mem.width != n:
            return [], []
        return io.gpu_util.series(pos), io.gpu_mem.series(pos)

    def _procs(self, g: GpuSample) -> str:
        return ", ".join(
            proc_text(p.pid, self.names.get(p.pid, "?"), p.used_mem, p.sm, p.mem) for p in g.procs
        )

    # ------------------------------------------------------ line by line

    def draw_lines(self) -> list[Segs]:
        # The same pieces, in the same order, as render()'s Text.
        if not self.gpus:
            line = self.line()
            line.add("GPUs ", "gpu--label")
            line.add(f"none ({clean(self.reason)})" if self.reason else "none")
            return [line.done(0)]
        width = self.size.width
        out: list[Segs] = []
        self.spark_width = 0
        if self.detail and self.size.height >= 2 * len(self.gpus):
            for pos, g in enumerate(self.gpus):
                first, second = self._detail_lines(g, pos, width)
                out.append(first.done(len(out)))
                out.append(second.done(len(out)))
            return out
        cols = columns(len(self.gpus), width, self.tiny)
        per_col = math.ceil(len(self.gpus) / cols)
        cell = (width - 2 * (cols - 1)) // cols
        for r in range(per_col):
            line = self.line()
            for c in range(cols):
                i = c * per_col + r
                if i >= len(self.gpus):
                    break
                if c:
                    line.add("  ")
                g = self.gpus[i]
                part = self._tiny_line(g, cell) if self.tiny else self._compact_line(g, cell)
                part.fit(cell)
                line.extend(part)
            out.append(line.done(r))
        return out

    def _bar(self, line: Line, frac: float | None, width: int, fill: str) -> None:
        for text, filled in bar_pieces(frac, width):
            line.add(text, fill if filled else "gpu--empty")

    def _compact_line(self, g: GpuSample, width: int) -> Line:
        out = self.line()
        out.add(f"GPU{g.index:<2}", "gpu--label")
        if g.error:
            out.add(clean(f" {g.name}: {g.error}"), "gpu--error")
            return out
        mem_frac, temp, power, util, mem = self._figures(g)
        util_fill, mem_fill = level_class(g.util, "gpu"), level_class(mem_frac, "gpu")
        tail = f" {mem} {temp} {power}"
        self._bar(out, g.util, max(3, width - 5 - 4 - len(tail)), util_fill)
        out.add(util, util_fill)
        out.add(f" {mem}", mem_fill)
        out.add(f" {temp} {power}")
        return out

    def _tiny_line(self, g: GpuSample, width: int) -> Line:
        out = self.line()
        out.add(f"GPU{g.index:<2}", "gpu--label")
        if g.error:
            out.add(clean(f" {g.error}"), "gpu--error")
            return out
        fill = level_class(g.util, "gpu")
        self._bar(out, g.util, max(1, width - 5 - 4), fill)
        out.add(f"{g.util * 100:3.0f}%" if g.util is not None else " n/a", fill)
        return out

    def _spark(self, line: Line, values: list[float | None], width: int) -> None:
        if width:
            line.add(" ")
            for text, cls in spark_pieces(values, width, "gpu"):
                line.add(text, cls)

    def _detail_lines(self, g: GpuSample, pos: int, width: int) -> tuple[Line, Line]:
        first, second = self.line(), self.line()
        first.add(f"GPU{g.index} ", "gpu--label")
        if g.error:
            first.add(clean(f"{g.name}: {g.error}"), "gpu--error")
            return first, second
        mem_frac, temp, power, util, mem = self._figures(g)
        util_fill, mem_fill = level_class(g.util, "gpu"), level_class(mem_frac, "gpu")
        if g.power_limit_w is not None:
            power += f"/{g.power_limit_w:.0f}W"
        tail = f"  {temp}  {power}"
        bar_w, spark_w = split(max(4, (width - 5 - 4 - 6 - len(mem) - len(tail) - 2) // 2), self.io)
        util_hist, mem_hist = self.history(pos) if spark_w else ([], [])
        self.spark_width = spark_w
        self._bar(first, g.util, bar_w, util_fill)
        first.add(util, util_fill)
        self._spark(first, util_hist, spark_w)
        first.add("  mem ", "gpu--label")
        self._bar(first, mem_frac, bar_w, mem_fill)
        self._spark(first, mem_hist, spark_w)
        first.add(f" {mem}{tail}")
        second.add("     ", "gpu--label")
        second.add(clean(g.name)[:30], "gpu--label")
        second.add(f"  {self._procs(g) or 'no processes'}")
        return first, second

    # ------------------------------------------------------ as one Text

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return rows(len(self.gpus), width, self.detail, self.tiny)

    def render(self) -> Text:
        """The panel as a Rich Text (what render_line draws; for print() and tests)."""
        label = self.get_component_rich_style("gpu--label")
        out = Text(no_wrap=True, overflow="crop")
        if not self.gpus:
            out.append("GPUs ", label)
            out.append(f"none ({clean(self.reason)})" if self.reason else "none")
            return out
        width = self.size.width
        if self.detail and self.size.height >= 2 * len(self.gpus):
            for i, g in enumerate(self.gpus):
                if i:
                    out.append("\n")
                out.append_text(self._detail(g, i, width))
            return out
        cols = columns(len(self.gpus), width, self.tiny)
        per_col = math.ceil(len(self.gpus) / cols)
        cell = (width - 2 * (cols - 1)) // cols
        for r in range(per_col):
            if r:
                out.append("\n")
            for c in range(cols):
                i = c * per_col + r
                if i >= len(self.gpus):
                    break
                if c:
                    out.append("  ")
                g = self.gpus[i]
                line = self._tiny(g, cell) if self.tiny else self._compact(g, cell)
                line.truncate(cell, pad=True)
                out.append_text(line)
        return out

    def _figures(self, g: GpuSample) -> tuple[float | None, str, str, str, str]:
        mem_frac = g.mem_used / g.mem_total if g.mem_used is not None and g.mem_total else None
        temp = f"{g.temp_c}°C" if g.temp_c is not None else NA
        power = f"{g.power_w:.0f}W" if g.power_w is not None else NA
        util = f"{g.util * 100:3.0f}%" if g.util is not None else " n/a"
        mem = f"{human_bytes(g.mem_used)}/{human_bytes(g.mem_total)}"
        return mem_frac, temp, power, util, mem

    def _compact(self, g: GpuSample, width: int) -> Text:
        label = self.get_component_rich_style("gpu--label")
        out = Text(no_wrap=True, overflow="crop")
        out.append(f"GPU{g.index:<2}", label)
        if g.error:
            out.append(clean(f" {g.name}: {g.error}"), self.get_component_rich_style("gpu--error"))
            return out
        mem_frac, temp, power, util, mem = self._figures(g)
        util_fill = self.get_component_rich_style(level_class(g.util, "gpu"))
        mem_fill = self.get_component_rich_style(level_class(mem_frac, "gpu"))
        tail = f" {mem} {temp} {power}"
        bar_w = max(3, width - 5 - 4 - len(tail))
        out.append_text(bar(g.util, bar_w, util_fill, self.get_component_rich_style("gpu--empty")))
        out.append(util, util_fill)
        out.append(f" {mem}", mem_fill)
        out.append(f" {temp} {power}")
        return out

    def _tiny(self, g: GpuSample, width: int) -> Text:
        out = Text(no_wrap=True, overflow="crop")
        out.append(f"GPU{g.index:<2}", self.get_component_rich_style("gpu--label"))
        if g.error:
            out.append(clean(f" {g.error}"), self.get_component_rich_style("gpu--error"))
            return out
        fill = self.get_component_rich_style(level_class(g.util, "gpu"))
        bar_w = max(1, width - 5 - 4)
        out.append_text(bar(g.util, bar_w, fill, self.get_component_rich_style("gpu--empty")))
        out.append(f"{g.util * 100:3.0f}%" if g.util is not None else " n/a", fill)
        return out

    def _spark_text(self, out: Text, values: list[float | None], width: int) -> None:
        if width:
            out.append(" ")
            for text, cls in spark_pieces(values, width, "gpu"):
                out.append(text, self.get_component_rich_style(cls))

    def _detail(self, g: GpuSample, pos: int, width: int) -> Text:
        label = self.get_component_rich_style("gpu--label")
        empty = self.get_component_rich_style("gpu--empty")
        out = Text(no_wrap=True, overflow="crop")
        out.append(f"GPU{g.index} ", label)
        if g.error:
            err = clean(f"{g.name}: {g.error}")  # the driver's and NVML's text
            out.append(err, self.get_component_rich_style("gpu--error"))
            out.append("\n")
            return out
        mem_frac, temp, power, util, mem = self._figures(g)
        util_fill = self.get_component_rich_style(level_class(g.util, "gpu"))
        mem_fill = self.get_component_rich_style(level_class(mem_frac, "gpu"))
        if g.power_limit_w is not None:
            power += f"/{g.power_limit_w:.0f}W"
        tail = f"  {temp}  {power}"
        bar_w, spark_w = split(max(4, (width - 5 - 4 - 6 - len(mem) - len(tail) - 2) // 2), self.io)
        util_hist, mem_hist = self.history(pos) if spark_w else ([], [])
        out.append_text(bar(g.util, bar_w, util_fill, empty))
        out.append(util, util_fill)
        self._spark_text(out, util_hist, spark_w)
        out.append("  mem ", label)
        out.append_text(bar(mem_frac, bar_w, mem_fill, empty))
        self._spark_text(out, mem_hist, spark_w)
        out.append(f" {mem}{tail}")
        out.append("\n     ", label)
        out.append(clean(g.name)[:30], label)
        out.append(f"  {self._procs(g) or 'no processes'}")
        return out
