"""One-line history sparklines inside a line-drawn panel's cells (a core's, a GPU's).

The characters are :func:`llmaos_tui.widgets.graph.sparkline_cell`'s (eight block
levels of a fraction in [0, 1], a zero the lowest block, a gap a space), cut into runs
of one colour band so a cell costs a few segments, not one a character. Each run names
its panel's component class (``<prefix>--low``, ``--mid``, ``--high``, and ``--empty``
for gaps), so the colours are the panel's theme variables and the line-drawn path and
the Rich Text path build the same pieces.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmaos_tui.widgets.graph import sparkline_cell
from llmaos_tui.widgets.text import level_class


def spark_pieces(values: Sequence[float | None], width: int, prefix: str) -> list[tuple[str, str]]:
    """The newest ``width`` values of ``values`` (fractions, oldest first, ``None`` a
    gap) as (text, component class) runs, exactly ``width`` cells in all; padded on
    the left with gaps when the history is shorter."""
    if width <= 0:
        return []
    shown = list(values[-width:])
    tail: list[float | None] = [None] * (width - len(shown))
    tail.extend(shown)
    chars = sparkline_cell(tail, width, 1.0)
    out: list[tuple[str, str]] = []
    run: list[str] = []
    cur = ""
    for ch, v in zip(chars, tail, strict=True):
        cls = f"{prefix}--empty" if v is None else level_class(v, prefix)
        if cls != cur and run:
            out.append(("".join(run), cur))
            run = []
        cur = cls
        run.append(ch)
    if run:
        out.append(("".join(run), cur))
    return out
