"""The fleet table at the terminal's size: 80x24 and 200x60, both themes.

At 80 columns both β columns stay and the sparkline gives way first; a down host's
whole reason is on screen (the detail line under the table, for the cursor's host) at
every size, never cut to "down: cannot connect to"; the cursor row's status reads in
the light theme as in the dark one.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from rich.color import Color
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.ssh import SshLink
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.screens.fleet import FleetScreen, HostDetail
from llmaos_tui.widgets.host_table import COLUMNS, HostTable, fit_widths
from tests.helpers import RECORDING, wait_for

UP = ("alpha", "bravo", "charlie")
FAR = "gpu-far-away-07"


def closed_port() -> int:
    """A local port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_with_a_down_host(tmp_path: Path, theme: str = "llmaos-dark") -> LlmaosApp:
    links: list[Link] = [ReplayLink(RECORDING, name=n) for n in UP]
    spec = HostSpec(name=FAR, host="127.0.0.1", port=closed_port(), user="ops")
    links.append(SshLink(spec))  # a real connection, refused: its reason is the network's
    return LlmaosApp(links, cursor_blink=False, theme=theme)


def text_of(w: Widget) -> list[str]:
    """The lines the widget draws now, as a user reads them."""
    strips = w.render_lines(Region(0, 0, w.size.width, w.size.height))
    return ["".join(seg.text for seg in strip) for strip in strips]


async def ready(app: LlmaosApp, pilot: Pilot[None]) -> FleetScreen:
    def settled() -> bool:
        hosts = app.fleet.hosts
        far = hosts[FAR]
        return (
            far.status is HostStatus.DOWN
            and bool(far.cause)
            and all(hosts[n].status is HostStatus.UP and len(hosts[n].history) > 2 for n in UP)
        )

    await wait_for(settled, what="three hosts up, one down")
    await pilot.pause(0.3)
    assert isinstance(app.screen, FleetScreen)
    return app.screen


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_every_column_fits_and_the_down_reason_is_whole(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app = app_with_a_down_host(tmp_path)
    async with app.run_test(size=size) as pilot:
        screen = await ready(app, pilot)
        table = screen.query_one(HostTable)
        header = text_of(table)[0]
        assert "β CPU" in header and "β GPU" in header, header
        assert table.virtual_size.width <= table.size.width  # no column off to the right
        assert not table.show_horizontal_scrollbar
        if size[0] >= 120:
            assert "CPU HISTORY" in header[: size[0]] or "CPU HIST" in header
        await pilot.press("down", "down", "down")  # the cursor to the down host, the last
        await pilot.pause()
        assert table.selected_host == FAR
        detail = " ".join(line.strip() for line in text_of(screen.query_one(HostDetail)))
        far = app.fleet.hosts[FAR]
        assert far.cause.startswith("cannot connect to ops@127.0.0.1:")
        assert far.cause in detail, (far.cause, detail)  # all of it, not cut
        assert detail.startswith(FAR) and "down: " in detail


async def test_at_80_columns_the_sparkline_gives_way_first(tmp_path: Path) -> None:
    app = app_with_a_down_host(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(app, pilot)
        table = screen.query_one(HostTable)
        wide = fit_widths(200, table._longest, table.sort_key)
        narrow = table.widths
        shrunk = [k for k, _, _ in COLUMNS if narrow[k] < wide[k]]
        assert "spark" in shrunk
        for k in ("cores", "cpu", "mem", "gpu", "beta_cpu", "beta_gpu"):
            assert narrow[k] == wide[k], k  # the numbers keep their width
        row = next(line for line in text_of(table) if line.lstrip().startswith("alpha"))
        assert row.count("%") == 3  # CPU, MEM, GPU, each shown


def test_the_sparkline_shrinks_before_anything_else() -> None:
    longest = {"name": 12, "status": 40, "os": 5}
    comfortable = fit_widths(200, longest, None)
    for width in range(200, 60, -1):
        w = fit_widths(width, longest, None)
        if w["spark"] < comfortable["spark"] and w["spark"] > 0:
            # while the sparkline is shrinking, the name and the OS keep theirs
            assert (w["name"], w["os"]) == (comfortable["name"], comfortable["os"]), width
        assert w["beta_cpu"] == w["beta_gpu"] == 5
        assert sum(w.values()) + 2 * len(w) <= max(width, 80), width


def contrast(a: Color, b: Color) -> float:
    def lum(c: Color) -> float:
        r, g, bl = (x / 255 for x in c.get_truecolor())
        lin = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in (r, g, bl)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("theme", ["llmaos-light", "llmaos-dark"])
async def test_the_cursor_rows_status_is_readable(tmp_path: Path, theme: str) -> None:
    app = app_with_a_down_host(tmp_path, theme)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await ready(app, pilot)
        table = screen.query_one(HostTable)
        for row in (0, 3):  # an up host's status and the down host's
            table.move_cursor(row=row, animate=False)
            await pilot.pause()
            strip = table.render_line(1 + row)  # under the header
            word = "up" if row == 0 else "down"
            (seg,) = [s for s in strip if s.text.strip().startswith(word)]
            assert seg.style is not None and seg.style.color and seg.style.bgcolor
            cursor = table.get_component_rich_style("datatable--cursor")
            assert seg.style.bgcolor == cursor.bgcolor  # the cursor's band, not the table's
            assert contrast(seg.style.color, seg.style.bgcolor) >= 4.5, (theme, seg.style)
