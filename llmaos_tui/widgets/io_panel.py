"""The host screen's history and I/O panel: CPU and memory history, network, disks and
temperatures, as btop's lower panels show them.

Three parts side by side: a graph of total CPU and memory (``HostState.history``), a
graph of the network's total in and out (loopback left out), and a text part: each
interface's and disk's rates and the temperatures (the CPU's sensors beside the GPUs'
own). On one line (a small terminal) only a summary: ``net ↓… ↑…  disk r… w…  Pkg 54°C``.

Every name here is the host's (an interface may be named with any bytes, a sensor's
label is whatever the driver says): cleaned with :func:`llmaos_agent.safetext.clean`
and cut to its column.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

from rich.cells import cell_len
from rich.segment import Segment
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.strip import Strip
from textual.widget import Widget

from llmaos_agent.protocol import GpuSample
from llmaos_agent.safetext import clean
from llmaos_tui.fleet.host_io import cpu_temps
from llmaos_tui.fleet.state import HostState
from llmaos_tui.widgets.graph import Graph, Series, human_rate

NAME_W = 12
"""The widest an interface, disk or sensor name is drawn (the kernel's are 15 at most)."""
GRAPH_POINTS = 240
"""History points handed to the CPU graph: more than its width shows at any size."""
FULL_ROWS = 6
"""The panel's height when it has room (the host screen's layout asks for this)."""


def safe_name(name: str, width: int = NAME_W) -> str:
    """A host-given name, cleaned and cut to ``width`` cells (… marks the cut)."""
    text = clean(name)
    if cell_len(text) <= width:
        return text
    t = Text(text)
    t.truncate(width, overflow="ellipsis")
    return t.plain


def temps_line(host: HostState, gpus: Sequence[GpuSample]) -> str:
    """``Pkg 54°C  max core 61°C  GPU0 45°C``: what a user looks at first."""
    parts: list[str] = []
    pkg, core = cpu_temps(host.io.named_temps())
    if pkg is not None:
        parts.append(f"Pkg {pkg}°C")
    if core is not None:
        parts.append(f"max core {core}°C")
    parts.extend(f"GPU{g.index} {g.temp_c}°C" for g in gpus if g.temp_c is not None)
    return "  ".join(parts)


def summary(host: HostState) -> str:
    io = host.io
    rx, tx = io.net_rx.last, io.net_tx.last
    rd, wr = io.disk_read.last, io.disk_write.last
    s = host.sample
    parts = [
        f"net ↓{human_rate(rx)} ↑{human_rate(tx)}",
        f"disk r {human_rate(rd)} w {human_rate(wr)}",
    ]
    temps = temps_line(host, s.gpus if s is not None else [])
    if temps:
        parts.append(temps)
    return "  ".join(parts)


def _column(title: str, lines: list[str], rows: int, width: int) -> list[str]:
    """A titled column cut to ``rows`` lines (the last says how many were left out)."""
    out = [title]
    room = rows - 1
    if len(lines) > room > 0:
        lines = [*lines[: room - 1], f"+{len(lines) - room + 1} more"]
    out.extend(lines[: max(0, room)])
    return [ln[:width].ljust(width) for ln in out] + [" " * width] * (rows - len(out))


class IoText(Widget):
    """The per-interface, per-disk and temperature columns (or the one-line summary)."""

    DEFAULT_CSS = "IoText { width: 3fr; height: 100%; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.host: HostState | None = None
        self.lines: list[str] = []
        """What it draws now, line by line (the tests read it)."""

    def show(self, host: HostState) -> None:
        self.host = host
        self._build()

    def on_resize(self) -> None:
        self._build()

    def _build(self) -> None:
        h = self.host
        width, rows = self.size
        if h is None or width <= 0 or rows <= 0:
            lines: list[str] = []
        elif rows == 1:
            lines = [summary(h)[:width]]
        else:
            lines = self._columns(h, width, rows)
        if lines != self.lines:
            self.lines = lines
            self.refresh()

    def _columns(self, h: HostState, width: int, rows: int) -> list[str]:
        io = h.io
        net = [
            f"{safe_name(n, 10):<10} ↓{human_rate(rx):>9} ↑{human_rate(tx):>9}"
            for n, rx, tx in io.net.rows()
        ]
        disk = [
            f"{safe_name(n, 10):<10} r{human_rate(rd):>9} w{human_rate(wr):>9}"
            for n, rd, wr in io.disk.rows()
        ]
        s = h.sample
        gpus = s.gpus if s is not None else []
        temps = [temps_line(h, [])] if io.named_temps() else []
        temps += [f"{safe_name(n)} {t}°C" for n, t in io.named_temps()]
        temps += [f"GPU{g.index} {g.temp_c}°C" for g in gpus if g.temp_c is not None]
        cols = [
            ("NETWORK", net or ["no traffic"]),
            ("DISK", disk or ["no I/O"]),
            ("TEMPERATURE", temps or ["no sensors"]),
        ]
        # As many columns as fit at 31 cells each; the temperatures give way first.
        n = max(1, min(3, (width + 2) // 33))
        col_w = (width - (n - 1) * 2) // n
        built = [_column(t, lines, rows, col_w) for t, lines in cols[:n]]
        return ["  ".join(parts) for parts in zip(*built, strict=True)]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        text = self.lines[y] if y < len(self.lines) else ""
        return Strip([Segment(text, self.rich_style)]).adjust_cell_length(width, self.rich_style)


class IoPanel(Horizontal):
    """CPU and memory history, the network's total, and :class:`IoText`."""

    DEFAULT_CSS = """
    IoPanel { height: 6; padding: 0 1; }
    IoPanel > Graph { width: 1fr; height: 100%; margin-right: 2; }
    IoPanel.-one-line > Graph { display: none; }
    IoPanel.-no-graphs > Graph { display: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._version = -1

    def compose(self) -> ComposeResult:
        yield Graph(Series("CPU"), Series("MEM"), id="io-history")
        yield Graph(
            Series("net ↓", top=None, unit="bytes/s", min_top=1000.0),
            Series("↑", top=None, unit="bytes/s", min_top=1000.0),
            id="io-net",
        )
        yield IoText(id="io-text")

    def set_rows(self, rows: int) -> None:
        self.set_class(rows <= 1, "-one-line")
        self.styles.height = max(1, rows)

    def on_resize(self) -> None:
        self.set_class(self.size.width < 90, "-no-graphs")  # the text part comes first

    def update_host(self, host: HostState) -> None:
        """Draw ``host``'s figures; nothing when no sample came since the last call."""
        io = host.io
        if io.version == self._version:
            return
        self._version = io.version
        tail = list(islice(reversed(host.history), GRAPH_POINTS))
        tail.reverse()
        hist = self.query_one("#io-history", Graph)
        hist.set_values([p.cpu for p in tail], 0)
        hist.set_values([p.mem for p in tail], 1)
        net = self.query_one("#io-net", Graph)
        net.set_values(io.net_rx.values(), 0)
        net.set_values(io.net_tx.values(), 1)
        self.query_one(IoText).show(host)
