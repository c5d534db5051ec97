"""The fleet screen: every host in one table, the fleet's beta on top (k9s's list view).

``h`` swaps the table for the heat map (every core and GPU of every host, one cell
each, one host a row, with a cursor and Enter to open a host as in the table); the sort
keys and the ``/`` filter order and select the hosts of both. Under either a detail line
says the cursor's host in full: where it is reached and its status with the whole reason
(the table's status column is as wide as the terminal allows). The
filter's ``group:`` words match the inventory's groups and plain words the hosts'
targets: the host states do not carry them, so the screen is given them
(:func:`link_facts` reads them off the links; without them the app's are read).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Static

from llmaos_agent.safetext import clean
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.screens.intents import OpenPlan
from llmaos_tui.widgets.filter_bar import FilterBar
from llmaos_tui.widgets.heatmap import HeatMap
from llmaos_tui.widgets.host_table import DESC_FIRST, HostFacts, HostTable
from llmaos_tui.widgets.key_footer import KeyFooter
from llmaos_tui.widgets.text import fixed, sparkline


def link_facts(links: Iterable[Any]) -> dict[str, HostFacts]:
    """Each link's host's target and inventory group, by host name: an SSH link has its
    inventory entry (``spec``); the others (local, recorded) have a target at most."""
    out = {}
    for link in links:
        spec = getattr(link, "spec", None)
        group = str(getattr(spec, "group", "") or "")
        target = str(getattr(spec, "target", "") or link.target)
        out[str(link.name)] = HostFacts(target, (group,) if group else ())
    return out


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
        # The last ``width`` points only: the history holds an hour of them.
        tail = list(islice(reversed(f.beta_history), width))[::-1] if width > 0 else []
        out.append(
            sparkline(tail, width, 2.0),
            self.get_component_rich_style("summary--spark"),
        )
        return out


class HostDetail(Static):
    """The cursor's host in full: name, target, OS and cores, status and its whole reason
    (wrapped, never cut: the reason is what a user needs to fix a down host)."""

    COMPONENT_CLASSES = {"detail--name", "detail--down"}
    DEFAULT_CSS = """
    HostDetail { height: auto; max-height: 6; background: $panel; color: $text-muted;
                 padding: 0 1; }
    HostDetail > .detail--name { color: $text; text-style: bold; }
    HostDetail > .detail--down { color: $error; }
    """

    _shown: tuple[object, ...] | None = None
    """What the line was last drawn from: an update re-lays the screen out (the line's
    height follows its text), and the cursor's host changes every sample while what this
    line says of it seldom does."""

    def show(self, h: HostState | None, target: str) -> None:
        key = (
            None
            if h is None
            else (h.name, target, h.hello and h.hello.host.os, h.cores, h.status, h.reason)
        )
        if self._shown is not None and self._shown == (key, self.app.theme):
            return
        self._shown = (key, self.app.theme)
        if h is None:
            self.update("")
            return
        name = self.get_component_rich_style("detail--name")
        out = Text()
        out.append(clean(h.name), Style(color=name.color, bold=name.bold))
        if target and target != h.name:
            out.append(f"  {clean(target)}")
        if h.hello is not None:
            out.append(f"  {clean(h.hello.host.os)}, {h.cores} cores")
        status = h.status.value + (f": {h.reason}" if h.reason else "")
        down = self.get_component_rich_style("detail--down")
        style = Style(color=down.color) if h.status is HostStatus.DOWN else Style()
        out.append("  ")
        out.append(clean(status), style)
        self.update(out)


class FleetScreen(Screen[None]):
    OPENED_BY = "fleet"
    """The app action whose key opens this screen: the footer leaves it out."""
    AUTO_FOCUS = "#hosts"
    BINDINGS = [
        Binding("h", "toggle_heatmap", "Heat map", id="fleet.heatmap"),
        Binding("b", "balance", "Balance", id="fleet.balance"),
        Binding("slash", "filter", "Filter", key_display="/", id="fleet.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="fleet.filter_clear"),
        Binding("P", "sort('cpu')", "Sort CPU", id="fleet.sort_cpu"),
        Binding("M", "sort('mem')", "Sort MEM", id="fleet.sort_mem"),
        Binding("G", "sort('gpu')", "Sort GPU", id="fleet.sort_gpu"),
        Binding("B", "sort('beta_cpu')", "Sort β", id="fleet.sort_beta_cpu"),
        Binding("N", "sort('name')", "Sort name", id="fleet.sort_name"),
        Binding("S", "sort('status')", "Sort status", show=False, id="fleet.sort_status"),
        Binding("C", "sort('cores')", "Sort cores", show=False, id="fleet.sort_cores"),
        Binding("U", "sort('beta_gpu')", "Sort β GPU", show=False, id="fleet.sort_beta_gpu"),
        Binding("O", "sort_none", "Fleet order", show=False, id="fleet.sort_none"),
        Binding("I", "invert", "Invert", show=False, id="fleet.sort_invert"),
    ]
    DEFAULT_CSS = """
    FleetScreen { layout: vertical; }
    FleetScreen #heatmap-view { display: none; height: 1fr; }
    FleetScreen.-heatmap #hosts { display: none; }
    FleetScreen.-heatmap #heatmap-view { display: block; }
    """

    SORT_CHOICES: tuple[tuple[str, str], ...] = (
        ("name", "name"),
        ("status", "status"),
        ("cores", "cores"),
        ("cpu", "CPU"),
        ("mem", "memory"),
        ("gpu", "GPU"),
        ("beta_cpu", "β CPU"),
        ("beta_gpu", "β GPU"),
    )
    """What the palette offers to sort the hosts by: (column, words)."""

    class OpenHost(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, fleet: FleetState, facts: Mapping[str, HostFacts] | None = None) -> None:
        super().__init__(name="fleet")
        self.fleet = fleet
        self.facts = facts
        """The hosts' targets and groups; None: read off the app's links when mounted."""
        self._mounted = False

    def compose(self) -> ComposeResult:
        yield FleetSummary(self.fleet)
        yield FilterBar("name, target, group:G or status:S", id="host-filter")
        yield HostTable(id="hosts")
        yield HostDetail(id="host-detail")
        with VerticalScroll(id="heatmap-view"):
            yield HeatMap(id="heatmap")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._mounted = True
        facts = self.facts
        if facts is None:
            watchers = getattr(self.app, "watchers", ())
            facts = link_facts(w.link for w in watchers if hasattr(w, "link"))
        self.query_one(HostTable).set_facts(facts)
        self.refresh_hosts(None)

    def on_screen_resume(self) -> None:
        self.refresh_hosts(None)

    @property
    def heatmap_shown(self) -> bool:
        return self.has_class("-heatmap")

    def refresh_hosts(self, names: Iterable[str] | None) -> None:
        tables = self.query(HostTable)
        if not self._mounted or not tables:  # not composed yet, or the app is closing
            return
        table = tables.first()
        hosts = self.fleet.hosts
        changed = None if names is None else list(names)
        table.update_hosts(hosts.values() if changed is None else (hosts[n] for n in changed))
        selected = self._cursor_host()
        if changed is None or selected in changed:
            self._show_detail(selected)
        self.query_one(FleetSummary).refresh()
        self._refresh_heatmap()

    def _refresh_heatmap(self) -> None:
        heat = self._heatmap()
        if heat is not None and self.heatmap_shown:  # drawn only while it is on screen
            heat.update_hosts(self.query_one(HostTable).shown_hosts)

    def _heatmap(self) -> HeatMap | None:
        # None while the app shuts down: its children go before a last timer tick does.
        found = self.query(HeatMap)
        return found.first() if found else None

    def _cursor_host(self) -> str | None:
        heat = self._heatmap()
        if heat is not None and self.heatmap_shown:
            return heat.cursor_host
        return self.query_one(HostTable).selected_host

    def on_heat_map_highlighted(self, event: HeatMap.Highlighted) -> None:
        event.stop()
        self._show_detail(event.name)

    def on_heat_map_selected(self, event: HeatMap.Selected) -> None:
        event.stop()
        self.post_message(self.OpenHost(event.name))

    def _show_detail(self, name: str | None) -> None:
        table = self.query_one(HostTable)
        facts = table.facts.get(name or "")
        host = self.fleet.hosts.get(name) if name is not None else None
        self.query_one(HostDetail).show(host, facts.target if facts else "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail(str(event.row_key.value) if event.row_key is not None else None)

    # ------------------------------------------------------------- actions

    def action_open_host(self) -> None:
        name = self.query_one(HostTable).selected_host
        if name is not None:
            self.post_message(self.OpenHost(name))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.post_message(self.OpenHost(str(event.row_key.value)))

    def action_balance(self) -> None:
        """Plan across hosts (queued requests); one host's cores come from its screen (b)."""
        self.app.post_message(OpenPlan(None, "hosts"))

    def action_toggle_heatmap(self) -> None:
        self.show_heatmap(not self.heatmap_shown)

    def show_heatmap(self, show: bool) -> None:
        self.set_class(show, "-heatmap")
        if show:
            self._refresh_heatmap()
            self.query_one(HeatMap).focus()
        else:
            self.query_one(HostTable).focus()
        self._show_detail(self._cursor_host())

    def sort_hosts(self, key: str | None) -> None:
        self.query_one(HostTable).sort_by(key)
        self._refresh_heatmap()

    def action_sort(self, key: str) -> None:
        self.query_one(HostTable).sort_by(key, reverse=key in DESC_FIRST)
        self._refresh_heatmap()

    def action_sort_none(self) -> None:
        self.query_one(HostTable).sort_by(None, reverse=False)
        self._refresh_heatmap()

    def action_invert(self) -> None:
        self.query_one(HostTable).invert()
        self._refresh_heatmap()

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def action_clear_filter(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.active:
            bar.clear_filter()

    def on_filter_bar_filtered(self, event: FilterBar.Filtered) -> None:
        self.query_one(HostTable).set_filter(event.value)
        self._refresh_heatmap()

    def on_filter_bar_done(self, _event: FilterBar.Done) -> None:
        if self.heatmap_shown:
            self.query_one(HeatMap).focus()
        else:
            self.query_one(HostTable).focus()
