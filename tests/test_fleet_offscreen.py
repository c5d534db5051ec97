"""The fleet table draws only the rows on screen: a host updated while its row is off screen
shows its new figures once the row scrolls into view, and a status change is never held
back (it decides the columns' widths and the filter)."""

from __future__ import annotations

from textual.app import App, ComposeResult

from llmaos_agent.protocol import Memory, Sample
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.widgets.host_table import HostTable

SIZE = (100, 12)  # about ten rows show of sixty


def host(name: str, load: float) -> HostState:
    h = HostState(name=name, status=HostStatus.UP)
    h.on_sample(Sample(t=1.0, seq=1, cpu=[load] * 4, mem=Memory(100, 50, 50, 0, 0)))
    return h


class TableApp(App[None]):
    def __init__(self, hosts: list[HostState]) -> None:
        super().__init__()
        self.hosts = hosts

    def compose(self) -> ComposeResult:
        yield HostTable()

    def on_mount(self) -> None:
        self.query_one(HostTable).update_hosts(self.hosts)


def cpu_cell(table: HostTable, name: str) -> str:
    return str(table.get_cell(name, "cpu").plain).strip()


async def test_an_off_screen_row_shows_its_new_figures_when_scrolled_to() -> None:
    hosts = [host(f"h{i:02d}", 0.10) for i in range(60)]
    app = TableApp(hosts)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.query_one(HostTable)
        last = hosts[-1]
        last.on_sample(Sample(t=2.0, seq=2, cpu=[0.77] * 4, mem=Memory(100, 50, 50, 0, 0)))
        table.update_hosts([last])
        await pilot.pause()
        table.move_cursor(row=table.row_count - 1, animate=False)
        await pilot.pause()
        assert table.selected_host == "h59"
        assert cpu_cell(table, "h59") == "77%"
        assert "77%" in "".join(s.text for s in table.render_line(table.size.height - 1))


async def test_an_off_screen_status_change_is_drawn_at_once() -> None:
    hosts = [host(f"h{i:02d}", 0.10) for i in range(60)]
    app = TableApp(hosts)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.query_one(HostTable)
        last = hosts[-1]
        last.set_status(HostStatus.DOWN, "connection reset by a very long reason here")
        table.update_hosts([last])
        await pilot.pause()
        assert table.get_cell("h59", "status").plain.startswith("down: connection reset")
        # The status column grew for it, as it would have with the row on screen.
        assert table.widths["status"] > len("down: connection")
