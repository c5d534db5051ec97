"""The cost of drawing history graphs: a 64-core grid of small graphs, per frame.

A headless Textual App holds, side by side, the widgets measured, each as the host
screen would size it at ``--size`` (120x40 by default):

- ``grid``: one :class:`~llmaos_tui.widgets.graph.GraphGrid` of 64 cores (14 cells a
  graph, a label line and 2 lines of graph each, 8 columns of 8), braille and block;
- ``graphs``: 64 separate :class:`~llmaos_tui.widgets.graph.Graph` widgets of the same
  size (what a grid of widgets would cost);
- ``bars`` (the baseline): the host screen's :class:`~llmaos_tui.widgets.core_bars.CoreBars`
  drawing the same 64 loads as bars, as it does today.

Each frame gives every core a new sample (or, for ``unchanged``, none) and then asks
each widget for all its lines through ``render_lines``, the call Textual's compositor
makes, with the widget's line cache cleared first so the whole widget is painted as
after a change (``lines only``: the widget's own ``render_line`` alone, without
Textual's work on each line: its styles, padding and filters). The time is CPU time
(``time.process_time``) over ``--frames`` frames, the best of ``--repeats`` runs (the
least disturbed by the rest of the machine); it is printed per frame and per graph, and
as a ratio to the baseline measured in the same run, so a slower machine changes the
figures but not much the ratios.

    python bench/graph_render.py [--frames 300] [--repeats 5] [--size 120x40] [--json]

What it is for: the console must watch a 64-core 8-GPU host at <= 1.5 CPU s/min
(bench/watch_cost.py); at one sample a second, a frame here costs its figure once a
second, so ``per frame`` in ms is ms of CPU a second (x 0.06 for s/min).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.app import App, ComposeResult  # noqa: E402
from textual.containers import Grid, Vertical  # noqa: E402
from textual.geometry import Region  # noqa: E402
from textual.widget import Widget  # noqa: E402

from llmaos_tui.widgets.core_bars import CoreBars  # noqa: E402
from llmaos_tui.widgets.graph import Graph, GraphGrid, Series  # noqa: E402

CORES = 64
CELL = 14
ROWS = 2
HISTORY = 120


class BenchApp(App[None]):
    CSS = f"""
    #graphs {{ grid-size: 8; grid-gutter: 0 1; height: auto; }}
    #graphs > Graph {{ height: {ROWS + 1}; }}
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield GraphGrid(cell_width=CELL, rows=ROWS, form="braille", id="braille")
            yield GraphGrid(cell_width=CELL, rows=ROWS, form="block", id="block")
            yield CoreBars(id="bars")
            with Grid(id="graphs"):
                for i in range(CORES):
                    yield Graph(Series(f"cpu{i}"), id=f"g{i}")


def paint(widget: Widget) -> None:
    """Every line of ``widget`` as the compositor asks for it, nothing cached by Textual."""
    widget._styles_cache.clear()
    widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))


def lines_only(widget: Widget) -> None:
    """Every line from the widget's own ``render_line``: its cost without Textual's."""
    for y in range(widget.size.height):
        widget.render_line(y)


def measure(step: Callable[[], None], frames: int, repeats: int) -> float:
    """The best CPU seconds a frame over ``repeats`` runs of ``frames`` frames."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(frames):
            step()
        best = min(best, (time.process_time() - t0) / frames)
    return best


class Steps:
    """One frame of each case: a new sample for every core (or none), then a paint."""

    def __init__(self, rnd: random.Random, bars: CoreBars, graphs: list[Graph]) -> None:
        self.rnd, self.bars_widget, self.graphs_list = rnd, bars, graphs

    def sample(self) -> list[float]:
        return [self.rnd.random() for _ in range(CORES)]

    def grid(self, grid: GraphGrid) -> None:
        grid.append_all(self.sample())
        paint(grid)

    def grid_lines(self, grid: GraphGrid) -> None:
        grid.append_all(self.sample())
        lines_only(grid)

    def graphs(self) -> None:
        for g, v in zip(self.graphs_list, self.sample(), strict=True):
            g.append(v)
            paint(g)

    def graphs_still(self) -> None:
        for g in self.graphs_list:
            paint(g)

    def bars(self) -> None:
        self.bars_widget.update_loads(self.sample())
        paint(self.bars_widget)


async def run(frames: int, repeats: int, size: tuple[int, int]) -> dict[str, float]:
    rnd = random.Random(16)
    app = BenchApp()
    async with app.run_test(size=size) as pilot:
        braille = app.query_one("#braille", GraphGrid)
        block = app.query_one("#block", GraphGrid)
        bars = app.query_one("#bars", CoreBars)
        graphs = [app.query_one(f"#g{i}", Graph) for i in range(CORES)]
        history = [[rnd.random() for _ in range(HISTORY)] for _ in range(CORES)]
        labels = [f"cpu{i}" for i in range(CORES)]
        for grid in (braille, block):
            grid.set_labels(labels)
            grid.set_histories(history)
        for g, h in zip(graphs, history, strict=True):
            g.set_values(h)
        bars.update_loads([h[-1] for h in history])
        await pilot.pause(0.2)
        assert braille.size.width >= 8 * CELL, f"terminal too narrow: {braille.size}"
        assert graphs[0].size.width > 0, "the separate graphs were not laid out"

        steps = Steps(rnd, bars, graphs)
        cases: list[tuple[str, Callable[[], None]]] = [
            ("bars", steps.bars),
            ("bars unchanged", partial(paint, bars)),
            ("grid braille", partial(steps.grid, braille)),
            ("grid braille unchanged", partial(paint, braille)),
            ("grid braille, lines only", partial(steps.grid_lines, braille)),
            ("grid block", partial(steps.grid, block)),
            ("grid block unchanged", partial(paint, block)),
            ("graphs braille", steps.graphs),
            ("graphs braille unchanged", steps.graphs_still),
        ]
        out: dict[str, float] = {}
        for name, step in cases:
            step()  # warm: the first frame builds the caches
            out[name] = measure(step, frames, repeats)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", default="120x40")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    got = asyncio.run(run(args.frames, args.repeats, (w, h)))
    base = got["bars"]
    rows = {
        name: {
            "frame_us": t * 1e6,
            "per_graph_us": t * 1e6 / CORES,
            "vs_bars": t / base if base else float("nan"),
            "cpu_s_per_min_at_1hz": t * 60,
        }
        for name, t in got.items()
    }
    if args.json:
        print(json.dumps({"size": args.size, "cores": CORES, "cases": rows}, indent=2))
        return
    print(f"{CORES} cores at {args.size}, {CELL} cells x {ROWS + 1} lines a graph; best of")
    print(f"{args.repeats} x {args.frames} frames, CPU time; baseline: CoreBars (bars)")
    print(f"{'case':<26}{'us/frame':>10}{'us/graph':>10}{'x bars':>8}{'s/min@1Hz':>11}")
    for name, r in rows.items():
        print(
            f"{name:<26}{r['frame_us']:>10.0f}{r['per_graph_us']:>10.1f}"
            f"{r['vs_bars']:>8.2f}{r['cpu_s_per_min_at_1hz']:>11.4f}"
        )


if __name__ == "__main__":
    main()
