"""History graphs (llmaos_tui/widgets/graph.py): the dots and blocks known values draw,
gaps, trimming to the width with the newest on the right, the autoscaled top and its
label, the sparkline cell, colours from the theme, and the cache (an unchanged graph
draws nothing again; a new sample rebuilds it once). A 64-core grid in a small App."""

from __future__ import annotations

import random

import pytest
from rich.style import Style
from textual.app import App, ComposeResult
from textual.color import Color

from llmaos_tui.widgets.graph import (
    EMPTY,
    Graph,
    GraphGrid,
    Series,
    human_rate,
    plot,
    sparkline_cell,
    sparkline_text,
)

# Braille dot bits, bottom dot first (dots 7, 3, 2, 1 and 8, 6, 5, 4).
LEFT = (0x40, 0x04, 0x02, 0x01)
RIGHT = (0x80, 0x20, 0x10, 0x08)


def column_dots(ch: str) -> tuple[list[int], list[int]]:
    """Which dots of a braille cell are set, bottom first: (left column, right column)."""
    if ch == " ":
        return [0, 0, 0, 0], [0, 0, 0, 0]
    code = ord(ch) - 0x2800
    assert 0 <= code <= 0xFF, f"{ch!r} is not braille"
    return [int(bool(code & b)) for b in LEFT], [int(bool(code & b)) for b in RIGHT]


def heights(rows: list[tuple[str, list[int]]]) -> list[int]:
    """Each sample column's filled dots, counted from the bottom over every line; an
    area graph has no hole under its top dot (checked)."""
    out: list[int] = []
    width = len(rows[0][0])
    for c in range(width):
        for side in (0, 1):
            dots: list[int] = []
            for chars, _bands in reversed(rows):  # the bottom line first
                dots.extend(column_dots(chars[c])[side])
            n = sum(dots)
            assert dots == [1] * n + [0] * (len(dots) - n), f"hole in column {2 * c + side}"
            out.append(n)
    return out


# ------------------------------------------------------------------ braille


def test_one_line_of_braille_for_known_values() -> None:
    rows = plot([0.0, 0.25, 0.5, 1.0], width=2, height=1)
    assert [r[0] for r in rows] == ["⢀⣼"]
    assert heights(rows) == [0, 1, 2, 4]


def test_two_lines_share_the_eight_dots() -> None:
    rows = plot([0.5, 1.0, 0.75, 0.125], width=2, height=2)
    assert heights(rows) == [4, 8, 6, 1]
    top, bottom = rows[0][0], rows[1][0]
    assert top == "⢸⡄"  # the first cell: left nothing, right full; the second: left 2 dots
    assert bottom == "⣿⣇"  # the second: left full, right its one bottom dot


def test_any_load_above_zero_shows_a_dot_and_zero_none() -> None:
    assert heights(plot([0.0, 0.01], width=1, height=3)) == [0, 1]
    assert heights(plot([1.0, 2.0], width=1, height=3)) == [12, 12]  # clipped at the top
    assert heights(plot([-1.0, 0.0], width=1, height=1)) == [0, 0]


def test_a_gap_draws_nothing_in_its_column() -> None:
    rows = plot([1.0, None, 1.0, 1.0], width=2, height=2)
    assert heights(rows) == [8, 0, 8, 8]
    assert [r[0][0] for r in rows] == ["⡇", "⡇"]  # only the left column of the first cell
    assert plot([None, None], width=1, height=2) == [(" ", [EMPTY]), (" ", [EMPTY])]


def test_line_form_draws_the_top_dot_only() -> None:
    rows = plot([0.0, 0.5, 1.0, None], width=2, height=1, filled=False)
    left0, right0 = column_dots(rows[0][0][0])
    assert left0 == [1, 0, 0, 0] and right0 == [0, 1, 0, 0]  # 0 is the bottom dot
    left1, right1 = column_dots(rows[0][0][1])
    assert left1 == [0, 0, 0, 1] and right1 == [0, 0, 0, 0]


def test_newest_on_the_right_and_the_width_decides_how_many_show() -> None:
    values = [1.0] * 10 + [0.0, 0.25, 0.5, 0.75]
    assert heights(plot(values, width=2, height=1)) == [0, 1, 2, 3]  # the last four
    assert heights(plot(values, width=3, height=1)) == [4, 4, 0, 1, 2, 3]
    short = heights(plot([1.0, 0.5], width=4, height=1))
    assert short == [0, 0, 0, 0, 0, 0, 4, 2]  # too few: the empty space is on the left


# ------------------------------------------------------------------ blocks


def test_block_form_one_sample_a_cell_in_eighths() -> None:
    rows = plot([0.0, 0.5, 1.0, None, 0.01], width=5, height=1, form="block")
    assert rows[0][0] == " ▄█ ▁"
    rows = plot([0.75, 0.25, 1.0], width=3, height=2, form="block")
    assert [r[0] for r in rows] == ["▄ █", "█▄█"]
    trimmed = plot([1.0, 1.0, 0.5], width=2, height=1, form="block")
    assert trimmed[0][0] == "█▄"


# ------------------------------------------------------------------ bands


def test_bands_by_value_and_by_line() -> None:
    ((_, bands),) = plot([0.2, 0.2, 0.6, 0.6, 0.9, 0.9, None, None], width=4, height=1)
    assert bands == [0, 1, 2, EMPTY]
    # A tall column shades by height: its bottom line is the low band, its top the high.
    rows = plot([1.0] * 8, width=1, height=4, form="block")
    assert [r[1][0] for r in rows] == [2, 1, 1, 0]  # lines topping 1, .75, .5, .25


# ------------------------------------------------------------------ text helpers


def test_human_rate_in_decimal_units() -> None:
    assert human_rate(12_345_678) == "12.3 MB/s"
    assert human_rate(999) == "999 B/s"
    assert human_rate(123_456_789) == "123 MB/s"
    assert human_rate(2.5e9) == "2.5 GB/s"
    assert human_rate(None) == "n/a"


def test_sparkline_cell_is_fixed_width_with_gaps() -> None:
    assert sparkline_cell([0.0, 0.5, None, 1.0], 6) == "  ▁▅ █"
    assert sparkline_cell([1.0] * 20 + [0.0], 3) == "██▁"
    assert sparkline_cell([], 4) == "    "
    assert sparkline_cell([10.0, 20.0, 40.0], 3, top=None) == "▃▅█"  # autoscaled
    assert len(sparkline_cell([0.3] * 100, 12)) == 12


def test_sparkline_text_takes_the_callers_styles() -> None:
    low, mid, high = Style(color="green"), Style(color="yellow"), Style(color="red")
    t = sparkline_text([0.1, 0.6, 0.95, None], 4, (low, mid, high))
    assert t.plain == "▁▅█ "
    styled = [(t.plain[sp.start : sp.end], sp.style) for sp in t.spans]
    assert styled == [("▁", low), ("▅", mid), ("█", high)]  # the gap has no style


# ------------------------------------------------------------------ the widget


class GraphApp(App[None]):
    def __init__(self, *graphs: Graph) -> None:
        super().__init__()
        self.graphs = graphs

    def compose(self) -> ComposeResult:
        yield from self.graphs


def text_of(graph: Graph) -> list[str]:
    return ["".join(s.text for s in graph.render_line(y)) for y in range(graph.size.height)]


async def test_graph_draws_its_label_value_and_history() -> None:
    g = Graph(Series("cpu0"), id="g")
    g.styles.width = 10
    g.styles.height = 3
    app = GraphApp(g)
    async with app.run_test(size=(40, 10)) as pilot:
        g.set_values([0.0, 0.25, 0.5, 1.0, 0.0, 0.25, 0.5, 0.45])
        await pilot.pause()
        lines = text_of(g)
        assert lines[0] == "cpu0   45%"
        assert heights(plot(g.series[0].values, 10, 2))[-9:] == [0, 0, 2, 4, 8, 0, 2, 4, 4]
        # The graph lines are plot()'s, right-aligned: the newest sample ends the line.
        assert lines[1:] == [r[0] for r in plot(g.series[0].values, 10, 2)]


async def test_autoscaled_rates_label_their_top_in_human_units() -> None:
    g = Graph(Series("eth0 rx", top=None, unit="bytes/s"), id="g")
    g.styles.width = 40
    g.styles.height = 3
    app = GraphApp(g)
    async with app.run_test(size=(60, 10)) as pilot:
        g.set_values([1e6, 12.3e6, 3e6])
        await pilot.pause()
        header = text_of(g)[0]
        assert header.startswith("eth0 rx") and header.endswith("3.0 MB/s  max 12.3 MB/s")
        # The highest sample reaches the top line; the others are scaled to it.
        assert heights(plot(g.series[0].values, 40, 2, top=12.3e6))[-3:] == [1, 8, 2]
        assert text_of(g)[1:] == [r[0] for r in plot(g.series[0].values, 40, 2, top=12.3e6)]
        # Narrow: the max goes first, then the label is cut; the value stays.
        g.styles.width = 12
        await pilot.pause()
        assert text_of(g)[0] == "eth 3.0 MB/s"


async def test_an_unchanged_graph_is_not_drawn_again_and_a_sample_rebuilds_it_once() -> None:
    g = Graph(Series("cpu"), id="g")
    g.styles.width = 20
    g.styles.height = 4
    app = GraphApp(g)
    async with app.run_test(size=(40, 10)) as pilot:
        g.set_values([0.5] * 50)
        await pilot.pause()
        before = g.rebuilds
        first = [g.render_line(y) for y in range(4)]
        again = [g.render_line(y) for y in range(4)]
        assert all(a is b for a, b in zip(first, again, strict=True))
        assert g.rebuilds == before  # the frame drawn at the pause is the one kept
        g.set_values([0.5] * 50)  # the same figures: nothing to do
        assert g.render_line(1) is first[1]
        g.append(1.0)
        changed = [g.render_line(y) for y in range(4)]
        assert g.rebuilds == before + 1  # every line from one rebuild
        assert changed[1] is not first[1]
        await pilot.pause()
        assert g.rebuilds == before + 1  # Textual's own frame used the same strips


async def test_colours_come_from_the_theme_and_follow_a_theme_change() -> None:
    g = Graph(Series("cpu"), id="g")
    g.styles.width = 8
    g.styles.height = 2
    app = GraphApp(g)

    def colours() -> set[str]:
        return {
            seg.style.color.get_truecolor().hex.lower()
            for seg in g.render_line(1)
            if seg.style is not None and seg.style.color is not None and seg.text.strip()
        }

    def theme(*names: str) -> set[str]:
        return {Color.parse(app.theme_variables[n]).hex.lower() for n in names}

    async with app.run_test(size=(40, 10)) as pilot:
        app.theme = "textual-dark"
        g.set_values([0.1] * 4 + [0.6] * 4 + [0.95] * 8)
        await pilot.pause()
        want = theme("success", "warning", "error")
        assert len(want) == 3 and colours() == want
        app.theme = "gruvbox"
        await pilot.pause()
        assert colours() == theme("success", "warning", "error") != want


@pytest.mark.parametrize("form", ["braille", "block"])
async def test_a_64_core_grid_renders_every_core(form: str) -> None:
    grid = GraphGrid(cell_width=14, rows=2, form=form, id="grid")  # type: ignore[arg-type]
    app = GraphApp()

    async with app.run_test(size=(120, 40)) as pilot:
        await app.mount(grid)
        rnd = random.Random(7)
        grid.set_labels([f"cpu{i}" for i in range(64)])
        grid.set_histories([[rnd.random() for _ in range(40)] for _ in range(64)])
        await pilot.pause()
        assert grid.shape(120) == (8, 8, 14)  # 8 columns of 8, 14 cells each
        assert grid.size.height == 8 * 3
        screen = "\n".join(
            "".join(s.text for s in strip) for strip in app.screen._compositor.render_strips()
        )
        for i in range(64):
            assert f"cpu{i} " in screen
        # Column-major, as btop numbers cores: cpu1 is under cpu0, cpu8 beside it.
        first = screen.splitlines()[0]
        assert first.index("cpu0") < first.index("cpu8") < first.index("cpu16")
        built = grid.rebuilds
        lines = [grid.render_line(y) for y in range(grid.size.height)]
        assert [grid.render_line(y) for y in range(grid.size.height)] == lines
        assert all(
            a is b for a, b in zip(lines, [grid.render_line(y) for y in range(24)], strict=True)
        )
        assert grid.rebuilds == built
        grid.append_all([0.5] * 64)
        for y in range(grid.size.height):
            grid.render_line(y)
        assert grid.rebuilds == built + 64  # each graph once, for its three lines
        assert all("50%" in "".join(s.text for s in grid.render_line(3 * r)) for r in range(8))
