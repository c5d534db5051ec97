"""The fleet screen: every host in one table, the fleet's beta on top (k9s's list view)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer

from llmaos_tui.fleet.state import FleetState
from llmaos_tui.widgets.host_table import HostTable
from llmaos_tui.widgets.text import fixed, sparkline


class FleetSummary(Widget):
    COMPONENT_CLASSES = {"summary--label", "summary--value", "summary--spark"}
    DEFAULT_CSS = """
    FleetSummary { height: 1; background: $panel; }
    FleetSummary > .summary--label { color: $text-muted; }
    FleetSummary > .summary--value { color: $accent; text-style: bold; }
    FleetSummary > .summary--spark { color: $secondary; }
    """

    def __init__(self, fleet: FleetState) -> None:
        super().__init__()
        self.fleet = fleet

    def render(self) -> Text:
        f = self.fleet
        label = self.get_component_rich_style("summary--label")
        value = self.get_component_rich_style("summary--value")
        up = len(f.up_hosts())
        out = Text(no_wrap=True, overflow="crop")
        out.append(" llmaos-tui ", value)
        out.append(f"· {len(f.hosts)} hosts, {up} up · ", label)
        out.append("β fleet ", label)
        out.append(fixed(f.beta() if up else None, 3), value)
        out.append(" ")
        width = max(0, self.size.width - out.cell_len - 1)
        out.append(
            sparkline(list(f.beta_history), width, 2.0),
            self.get_component_rich_style("summary--spark"),
        )
        return out


class FleetScreen(Screen[None]):
    DEFAULT_CSS = """
    FleetScreen { layout: vertical; }
    """

    class OpenHost(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, fleet: FleetState) -> None:
        super().__init__(name="fleet")
        self.fleet = fleet
        self._mounted = False

    def compose(self) -> ComposeResult:
        yield FleetSummary(self.fleet)
        yield HostTable(id="hosts")
        yield Footer()

    def on_mount(self) -> None:
        self._mounted = True
        self.refresh_hosts(None)

    def on_screen_resume(self) -> None:
        self.refresh_hosts(None)

    def refresh_hosts(self, names: Iterable[str] | None) -> None:
        if not self._mounted:
            return
        table = self.query_one(HostTable)
        hosts = self.fleet.hosts
        table.update_hosts(hosts.values() if names is None else (hosts[n] for n in names))
        self.query_one(FleetSummary).refresh()

    def action_open_host(self) -> None:
        name = self.query_one(HostTable).selected_host
        if name is not None:
            self.post_message(self.OpenHost(name))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.OpenHost(str(event.row_key.value)))
