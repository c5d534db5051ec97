"""The host screen's line-drawn panels (core bars, GPUs, memory, β) draw what Textual
draws from the same panel's Rich Text, segment for segment and style for style (the
selection offsets too), in every form,
in both themes and after a theme switch; and new data repaints only the lines it
changed (issue 12: an unchanged line costs nothing)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.geometry import Offset
from textual.pilot import Pilot
from textual.selection import Selection
from textual.strip import Strip
from textual.visual import Visual, visualize

from llmaos_tui.widgets.beta_panel import BetaPanel
from llmaos_tui.widgets.core_bars import CoreBars
from llmaos_tui.widgets.gpu_panel import GpuPanel
from llmaos_tui.widgets.lines import LineWidget
from llmaos_tui.widgets.memory_panel import MemoryPanel
from tests.test_host_layout import app_for, played

PANELS = (CoreBars, GpuPanel, MemoryPanel, BetaPanel)


def _cells(strip: Strip) -> list[tuple[str, Any]]:
    # Each segment's text and style, the selection offset in its meta included.
    return [(s.text, s.style) for s in strip]


def _mismatches(w: LineWidget) -> list[str]:
    width, height = w.size
    text_path = Visual.to_strips(
        w, visualize(w, w.render(), markup=False), width, height, w.visual_style
    )
    out = []
    for y in range(height):
        want = text_path[y] if y < len(text_path) else Strip.blank(width, w.visual_style.rich_style)
        got = w.render_line(y)
        if _cells(want) != _cells(got):
            out.append(f"{type(w).__name__} line {y}:\n  text: {want.text!r}\n  line: {got.text!r}")
    return out


async def _check_all(pilot: Pilot[None]) -> list[str]:
    await pilot.pause(0.2)
    screen = pilot.app.screen
    return [m for cls in PANELS for w in screen.query(cls) for m in _mismatches(w)]


@pytest.mark.parametrize(
    ("cores", "gpus", "size"),
    [(64, 8, (80, 24)), (64, 8, (200, 60)), (256, 8, (120, 40)), (96, 2, (100, 30)),
     (8, 0, (120, 40))],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)  # fmt: skip
async def test_line_drawn_panels_match_their_text(
    cores: int, gpus: int, size: tuple[int, int]
) -> None:
    app = app_for(cores, gpus)
    rng = random.Random(12)
    async with app.run_test(size=size) as pilot:
        screen = await played(pilot)
        bad = await _check_all(pilot)
        bars = screen.query_one(CoreBars)
        for _ in range(3):  # every level and percent width, as the recording may not
            bars.update_loads(
                [rng.choice([0.0, 0.05, rng.random(), 0.999, 1.0]) for _ in bars.loads]
            )
            bad += await _check_all(pilot)
        for key in ("1", "2", "3", "1", "2", "3"):  # panels hidden and shown: new sizes, forms
            await pilot.press(key)
            bad += await _check_all(pilot)
        app.theme = "llmaos-light"
        bad += await _check_all(pilot)
        assert not bad, "\n".join(bad[:5])


class _Bars(App[None]):
    def compose(self) -> ComposeResult:
        yield CoreBars(id="cores")


async def test_only_the_changed_line_is_drawn_again() -> None:
    app = _Bars()
    async with app.run_test(size=(200, 20)) as pilot:
        bars = app.query_one(CoreBars)
        loads = [0.25] * 64
        bars.update_loads(loads)
        await pilot.pause(0.2)
        lines = [bars.render_line(y).text for y in range(bars.size.height)]
        assert "63" in "".join(lines)
        before = bars.redrawn_lines
        loads[0] = 1.0  # core 0 busy: its line shows 100%, the others are as they were
        bars.update_loads(loads)
        await pilot.pause(0.2)
        assert bars.redrawn_lines == before + 1
        now = [bars.render_line(y).text for y in range(bars.size.height)]
        changed = [y for y, (a, b) in enumerate(zip(lines, now, strict=True)) if a != b]
        assert len(changed) == 1 and "100%" in now[changed[0]]
        bars.update_loads(loads)  # the same loads: nothing drawn
        await pilot.pause(0.2)
        assert bars.redrawn_lines == before + 1


async def test_selected_text_is_highlighted_and_copied() -> None:
    app = _Bars()
    async with app.run_test(size=(80, 10)) as pilot:
        bars = app.query_one(CoreBars)
        bars.update_loads([0.33, 0.2, 0.5, 0.9])
        await pilot.pause(0.2)
        plain = _cells(bars.render_line(0))
        selection = Selection(Offset(2, 0), Offset(10, 1))
        app.screen.selections = {bars: selection}
        await pilot.pause(0.2)
        shown = bars.render_line(0)
        assert _cells(shown) != plain, "the selection is not highlighted"
        assert not _mismatches(bars)
        got = bars.get_selection(selection)
        assert got is not None and got[0] == "████────"
        app.screen.clear_selection()
        await pilot.pause(0.2)
        assert _cells(bars.render_line(0)) == plain
