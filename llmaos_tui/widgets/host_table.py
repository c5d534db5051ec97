"""The fleet's hosts, one row each: status, size, load, balance and a CPU sparkline."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.widgets.text import NA, fixed, percent, sparkline

SPARK_WIDTH = 20
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("name", "HOST", 16),
    ("status", "STATUS", 24),
    ("os", "OS", 8),
    ("cores", "CORES", 5),
    ("cpu", "CPU%", 5),
    ("mem", "MEM%", 5),
    ("gpu", "GPU%", 5),
    ("beta_cpu", "β CPU", 5),
    ("beta_gpu", "β GPU", 5),
    ("spark", "CPU HISTORY", SPARK_WIDTH),
)


class HostTable(DataTable[Any]):
    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {
        "hosttable--up",
        "hosttable--stale",
        "hosttable--down",
        "hosttable--spark",
    }
    # DataTable's own Enter is hidden from the footer; name it for what it does here.
    BINDINGS = [Binding("enter", "select_cursor", "Open host", id="fleet.open")]
    DEFAULT_CSS = """
    HostTable { height: 1fr; }
    HostTable > .hosttable--up { color: $success; }
    HostTable > .hosttable--stale { color: $warning; }
    HostTable > .hosttable--down { color: $error; }
    HostTable > .hosttable--spark { color: $secondary; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self._rows: dict[str, tuple[Any, ...]] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def update_hosts(self, hosts: Iterable[HostState]) -> None:
        for h in hosts:
            cells = self._cells(h)
            old = self._rows.get(h.name)
            if old is None:
                self.add_row(*cells, key=h.name)
            else:
                for (key, _, _), before, after in zip(COLUMNS, old, cells, strict=True):
                    if before != after:
                        self.update_cell(h.name, key, after)
            self._rows[h.name] = cells

    @property
    def selected_host(self) -> str | None:
        if not self.row_count:
            return None
        return str(self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value)

    def _cells(self, h: HostState) -> tuple[Any, ...]:
        style = self.get_component_rich_style(_status_class(h.status))
        status = h.status.value + (f": {h.reason}" if h.reason else "")
        os_name = h.hello.host.os if h.hello else NA
        live = h.up and h.sample is not None
        return (
            Text(h.name),  # Text, not str: a str cell is read as markup
            Text(status, style),
            Text(os_name),
            Text(str(h.cores) if h.cores else NA, justify="right"),
            Text(percent(h.cpu if live else None), justify="right"),
            Text(percent(h.mem if live else None), justify="right"),
            Text(percent(h.gpu if live else None), justify="right"),
            Text(fixed(h.beta_cpu if live else None), justify="right"),
            Text(fixed(h.beta_gpu if live else None), justify="right"),
            Text(
                sparkline([p.cpu for p in h.history], SPARK_WIDTH),
                self.get_component_rich_style("hosttable--spark"),
            ),
        )


def _status_class(status: HostStatus) -> str:
    if status is HostStatus.UP:
        return "hosttable--up"
    if status is HostStatus.DOWN:
        return "hosttable--down"
    return "hosttable--stale"
