"""The host screen fits big hosts in small terminals: every core drawn, the process
table keeping its rows and its COMMAND column, at 80x24, 120x40 and 200x60, for the
recordings of 8 to 256 cores with 0, 2, 8 and 16 GPUs (tests/data/make_big_recordings.py):
every GPU index drawn too (16 as on a big box or one split by MIG).

What is counted is what the screen shows: the text of the lines the core widget is
visible on, read back as core indices (or index ranges and cells, in the dense form),
and the lines of the process table that hold a process.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.screens.host import PROCS_SHARE, HostScreen
from llmaos_tui.widgets.core_bars import CoreBars
from llmaos_tui.widgets.gpu_panel import GpuPanel
from llmaos_tui.widgets.process_table import ProcessTable
from tests.data import make_big_recordings as big
from tests.helpers import wait_for

SIZES = [(80, 24), (120, 40), (200, 60)]
BAR = "█▏▎▍▌▋▊▉─"
LABELLED = re.compile(rf"(\d+) ?(?=[{BAR}])")
DENSE = re.compile(r"^\s*(\d+)-(\d+)\s+([▁▂▃▄▅▆▇█]+)\s*$")
PROC_ROW = re.compile(r"^\s*\d+\s+\S")


def app_for(cores: int, gpus: int, theme: str = "llmaos-dark") -> LlmaosApp:
    link = ReplayLink(big.path(cores, gpus), name=big.name(cores, gpus))
    return LlmaosApp([link], theme=theme, cursor_blink=False)


async def played(pilot: Pilot[None]) -> HostScreen:
    app = pilot.app
    assert isinstance(app, LlmaosApp)
    host = next(iter(app.fleet.hosts.values()))
    await wait_for(
        lambda: host.status is HostStatus.UP and bool(host.procs) and len(host.history) > 3,
        what="the recording played",
    )
    screen = app.screen
    assert isinstance(screen, HostScreen)
    return screen


def visible_lines(screen: Screen[Any], widget: Widget) -> list[str]:
    """The text of each screen line where ``widget``'s content shows, cropped to it."""
    strips = screen._compositor.render_strips()
    r = widget.content_region
    out = []
    for y in range(r.y, min(r.bottom, screen.size.height)):
        try:
            at, _ = screen.get_widget_at(r.x, y)
        except Exception:  # noqa: BLE001 - off screen
            continue
        if at is widget:
            out.append("".join(seg.text for seg in strips[y])[r.x : r.right])
    return out


def cores_drawn(lines: list[str]) -> list[int]:
    """The core indices a user can read off the core lines, each once per drawing."""
    drawn: list[int] = []
    for line in lines:
        m = DENSE.match(line)
        if m:
            lo, hi, cells = int(m[1]), int(m[2]), m[3]
            assert len(cells) == hi - lo + 1, f"range {lo}-{hi} has {len(cells)} cells"
            drawn.extend(range(lo, hi + 1))
        else:
            drawn.extend(int(x) for x in LABELLED.findall(line))
    return drawn


async def settle(pilot: Pilot[None], screen: HostScreen, size: tuple[int, int]) -> None:
    await pilot.resize_terminal(*size)
    await wait_for(
        lambda: screen.size == size and screen.layout_plan is not None,
        what=f"the screen at {size}",
    )
    await pilot.pause(0.2)  # the relayout drawn


FIGURES: dict[tuple[int, int, int, int], tuple[int, str, int]] = {}


@pytest.mark.parametrize(("cores", "gpus"), [(c, g) for c in big.CORES for g in big.GPUS])
async def test_every_core_and_the_process_rows_show_at_each_size(cores: int, gpus: int) -> None:
    app = app_for(cores, gpus)
    async with app.run_test(size=SIZES[0]) as pilot:
        screen = await played(pilot)
        bars, table = screen.query_one(CoreBars), screen.query_one(ProcessTable)
        for size in SIZES:
            await settle(pilot, screen, size)
            where = f"{cores} cores, {gpus} GPUs at {size[0]}x{size[1]}"
            drawn = cores_drawn(visible_lines(screen, bars))
            assert sorted(drawn) == list(range(cores)), f"{where}: cores drawn {drawn}"
            rows = [ln for ln in visible_lines(screen, table) if PROC_ROW.match(ln)]
            header = visible_lines(screen, table)[0]
            assert "COMMAND" in header, f"{where}: {header!r}"
            want = min(table.row_count, math.ceil(PROCS_SHARE * size[1]) - 1)
            assert len(rows) >= want, f"{where}: {len(rows)} process rows, want {want}"
            gpu_lines = visible_lines(screen, screen.query_one(GpuPanel))
            shown = {int(i) for ln in gpu_lines for i in re.findall(r"GPU(\d+)", ln)}
            assert shown == set(range(gpus)), f"{where}: GPUs {shown}"
            FIGURES[(cores, gpus, size[0], size[1])] = (len(drawn), bars.form, len(rows))


async def test_number_keys_hide_and_show_the_panels() -> None:
    app = app_for(256, 8)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await played(pilot)
        await settle(pilot, screen, (80, 24))
        table = screen.query_one(ProcessTable)
        before = len([ln for ln in visible_lines(screen, table) if PROC_ROW.match(ln)])
        await pilot.press("1", "2")
        await pilot.pause(0.2)
        assert not visible_lines(screen, screen.query_one(CoreBars))
        assert not visible_lines(screen, screen.query_one(GpuPanel))
        after = len([ln for ln in visible_lines(screen, table) if PROC_ROW.match(ln)])
        assert after >= before + 8, (before, after)  # the lines the cores and GPUs had
        await pilot.press("3")  # the last panel stays
        await pilot.pause(0.1)
        assert visible_lines(screen, table)
        await pilot.press("1")
        await pilot.pause(0.2)
        assert sorted(cores_drawn(visible_lines(screen, screen.query_one(CoreBars)))) == list(
            range(256)
        )


def test_the_committed_recordings_are_the_scripts_output() -> None:
    lines = [ln for ln in big.SOURCE.read_text().splitlines() if ln.strip()]
    for cores in big.CORES:
        for gpus in big.GPUS:
            assert big.path(cores, gpus).read_text() == big.convert(lines, cores, gpus), (
                f"re-run tests/data/make_big_recordings.py ({big.name(cores, gpus)} differs)"
            )


def test_zz_print_figures() -> None:
    """Not a check: the counts above, for the report (pytest -s)."""
    for (c, g, w, h), (n, form, rows) in sorted(FIGURES.items()):
        print(f"{c:>3}c {g}g {w}x{h}: {n} cores drawn ({form}), {rows} process rows")
