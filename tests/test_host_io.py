"""Issue 16's network, disk and temperature figures in the console: the state a real
agent's samples build (loopback's rates grow when the test sends on it), the temperature
pairing and age rules, the host screen's I/O panel (names cleaned, key 4) and the fleet
table's NET/s and DISK/s columns.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path

from textual.app import App, ComposeResult

from llmaos_agent.protocol import DiskRate, Memory, NetRate, Sample
from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.host_io import TEMPS_STALE_S, cpu_temps
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.state import HostState, HostStatus
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.widgets.graph import Graph
from llmaos_tui.widgets.host_table import HostTable
from llmaos_tui.widgets.io_panel import IoPanel, IoText
from tests.helpers import wait_for

MEM = Memory(1000, 500, 500, 0, 0)


def sample(t: float, **kw: object) -> Sample:
    return Sample(t=t, seq=int(t), cpu=[0.25, 0.5], mem=MEM, **kw)  # type: ignore[arg-type]


def test_temperatures_pair_with_names_only_when_the_counts_match_and_go_stale() -> None:
    h = HostState("h")
    h.on_sample(sample(1.0, temps=[54, 61, 58], temp_names=["Package id 0", "Core 0", "Core 1"]))
    assert h.io.named_temps() == [("Package id 0", 54), ("Core 0", 61), ("Core 1", 58)]
    assert cpu_temps(h.io.named_temps()) == (54, 61)
    h.on_sample(sample(2.0))  # no temperatures in between: the last ones hold
    assert h.io.fresh_temps() == [54, 61, 58]
    h.on_sample(sample(6.0, temps=[55, 60]))  # a sensor gone: the names no longer pair
    assert [n for n, _ in h.io.named_temps()] == ["temp 0", "temp 1"]
    h.on_sample(sample(6.0 + TEMPS_STALE_S + 1))  # none for too long, by the host's clock
    assert h.io.fresh_temps() == [] and h.io.named_temps() == []


def test_rates_keep_rows_seen_and_totals_leave_loopback_out() -> None:
    h = HostState("h")
    h.on_sample(sample(1.0, net=[NetRate("eth0", 100, 50), NetRate("lo", 9000, 9000)]))
    assert h.io.net_total == 150
    h.on_sample(sample(2.0, disk=[DiskRate("nvme0n1", 4096, 0)]))
    assert h.io.net.rows() == [("eth0", 0, 0), ("lo", 0, 0)]  # kept, at 0: no flicker
    assert h.io.net_total == 0 and h.io.disk_total == 4096
    assert h.io.net_rx.values() == [100.0, 0.0]


def test_history_fills_the_rings_at_attach() -> None:
    h = HostState("h")
    h.on_history([sample(float(t), net=[NetRate("eth0", t, 0)]) for t in range(1, 11)])
    assert len(h.io.cores.series(1)) == 10 and h.io.cores.series(1)[-1] == 0.5
    assert h.io.net_rx.values()[-1] == 10.0


async def test_a_real_agent_reports_loopback_traffic(agent_home: Path) -> None:
    app = LlmaosApp([LocalLink()], cursor_blink=False)
    stop = threading.Event()

    def blast() -> None:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.bind(("127.0.0.1", 0))
            rx.setblocking(False)
            while not stop.is_set():
                for _ in range(50):
                    tx.sendto(b"x" * 8000, rx.getsockname())
                    with contextlib.suppress(BlockingIOError):
                        rx.recv(9000)
                stop.wait(0.01)

    async with app.run_test(size=(120, 40)):
        h = next(iter(app.fleet.hosts.values()))
        await wait_for(lambda: h.status is HostStatus.UP and h.sample is not None, 30, "up")
        sender = threading.Thread(target=blast, daemon=True)
        sender.start()
        try:
            await wait_for(
                lambda: dict((n, rx) for n, rx, _ in h.io.net.rows()).get("lo", 0) > 100_000,
                30,
                "loopback's rate above 100 kB/s",
            )
        finally:
            stop.set()
            sender.join(5)
        assert h.io.net_total < dict((n, rx + tx) for n, rx, tx in h.io.net.rows())["lo"] * 10
        screen = app.screen
        assert isinstance(screen, HostScreen)  # one host: the console opens on its screen
        await wait_for(lambda: any("lo" in ln for ln in screen.query_one(IoText).lines))


class TableApp(App[None]):
    def __init__(self, hosts: list[HostState]) -> None:
        super().__init__()
        self.hosts = hosts

    def compose(self) -> ComposeResult:
        yield HostTable()

    def on_mount(self) -> None:
        self.query_one(HostTable).update_hosts(self.hosts)


def up_host(name: str, net: int, disk: int) -> HostState:
    h = HostState(name)
    h.set_status(HostStatus.UP)
    h.on_sample(sample(1.0, net=[NetRate("eth0", net, 0)], disk=[DiskRate("sda", disk, 0)]))
    return h


async def test_fleet_table_shows_and_sorts_by_net_and_disk() -> None:
    hosts = [up_host("a", 5_000, 9), up_host("b", 2_000_000, 1), up_host("c", 10, 70_000)]
    app = TableApp(hosts)
    async with app.run_test(size=(200, 20)) as pilot:
        await pilot.pause()
        table = app.query_one(HostTable)
        assert table.widths["net"] and table.widths["disk"] and table.widths["gpu_spark"]
        assert table.get_cell("b", "net").plain == "2.0M"
        table.sort_by("net")
        await pilot.pause()
        assert table.shown_names == ["b", "a", "c"]
        table.sort_by("disk")
        await pilot.pause()
        assert table.shown_names == ["c", "a", "b"]


HOSTILE = "ev\x1b]0;pwn\x07il\u202e0"


async def test_host_screen_io_panel_cleans_names_and_toggles_with_4() -> None:
    h = HostState("h")
    h.set_status(HostStatus.UP)
    h.on_history([sample(float(t), net=[NetRate(HOSTILE, 1000 * t, 0)]) for t in range(1, 61)])

    class One(App[None]):
        def on_mount(self) -> None:
            self.push_screen(HostScreen(h, cursor_blink=False))

    app = One()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, HostScreen)
        panel = screen.query_one(IoPanel)
        assert panel.display and screen.layout_plan and screen.layout_plan.io_rows > 1
        text = "\n".join(screen.query_one(IoText).lines)
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "ev" in text
        graph = screen.query_one("#io-net", Graph)
        assert graph.series[0].values[-1] == 60_000.0  # full from the history at once
        await pilot.press("4")
        await pilot.pause(0.2)
        assert not panel.display
        await pilot.press("4")
        await pilot.pause(0.2)
        assert panel.display
        await asyncio.sleep(0)
