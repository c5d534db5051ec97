"""Text helpers shared by the widgets: host text made safe, sizes, percentages, bars and
sparklines.

Free of Textual (the CLI imports it too). Everything a host reports goes to the screen
through :func:`safe` (or :func:`safe_text` for a Text that may already hold host text):
control characters become visible escapes (:func:`llmaos_agent.safetext.clean`), and as a
Text it is never read as Rich markup, so ``[red]x`` and ``[link=...]`` show as written.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import JustifyMethod
from rich.style import Style, StyleType
from rich.text import Text

from llmaos_agent.safetext import clean, clean_lines, is_clean
from llmaos_tui.formats import NA, ago, fixed, human_bytes, level_class, percent, sparkline

__all__ = [
    "NA", "ago", "bar", "bar_pieces", "fixed", "human_bytes", "level_class", "percent", "safe",
    "safe_cell", "safe_lines", "safe_log", "safe_text", "sparkline",
]  # fmt: skip

_EIGHTHS = " ▏▎▍▌▋▊▉"


def safe(text: object, style: StyleType = "", *, justify: JustifyMethod | None = None) -> Text:
    """Untrusted text as a Text to draw: escapes for control and format characters, no
    markup."""
    return Text(clean(text), style=style, justify=justify)


def safe_log(data: str) -> Text:
    """A log's output as one Text of lines, each cleaned (tabs kept; CR and the other line
    breaks end a line rather than move the cursor)."""
    return Text("\n".join(clean_lines(data)))


def safe_lines(lines: Sequence[object]) -> Text:
    """Lines of ours, each holding untrusted text, as one Text (each line cleaned, the
    newlines between them kept)."""
    return Text("\n".join(clean(line) for line in lines))


def safe_text(t: Text) -> Text:
    """``t`` with its characters cleaned and its styles kept (the same object when it is
    clean already, the common case). Build host text with :func:`safe` where you can:
    a Text has lost BEL, BS, VT, FF and CR already (Rich strips them), so their escapes
    cannot show here."""
    if is_clean(t.plain.replace("\n", "")):
        return t
    out = t.blank_copy()
    cuts = sorted({o for span in t.spans for o in (span.start, span.end)})
    for piece in t.divide(cuts):
        start = len(out)
        out.append("\n".join(clean(line) for line in piece.plain.split("\n")))
        for span in piece.spans:  # after the cuts, each covers its whole piece
            out.stylize(span.style, start, len(out))
    return out


def safe_cell(value: object) -> object:
    """A table cell to draw: a str as a cleaned Text (a str cell would be read as markup),
    a Text cleaned, anything else (numbers, renderables of ours) as it is."""
    if isinstance(value, str):
        return Text(clean(value))
    if isinstance(value, Text):
        return safe_text(value)
    return value


def bar(frac: float | None, width: int, fill: Style, empty: Style) -> Text:
    """A horizontal bar with eighth-block precision."""
    t = Text()
    for text, filled in bar_pieces(frac, width):
        t.append(text, fill if filled else empty)
    return t


_BARS: dict[tuple[int, int], tuple[tuple[str, bool], ...]] = {}


def bar_pieces(frac: float | None, width: int) -> tuple[tuple[str, bool], ...]:
    """The pieces of :func:`bar`, each (text, drawn in the fill style), none empty; the
    same tuple for the same bar (a line-drawn widget compares them)."""
    if width <= 0:
        return ()
    if frac is None:
        return ((NA.center(width), False),)
    eighths = round(min(max(frac, 0.0), 1.0) * width * 8)
    key = (eighths, width)
    got = _BARS.get(key)
    if got is None:
        full, part = divmod(eighths, 8)
        pieces = [("█" * full, True)]
        if full < width:
            pieces.append((_EIGHTHS[part] if part else "", True))
            pieces.append(("─" * (width - full - (1 if part else 0)), False))
        got = _BARS[key] = tuple((t, f) for t, f in pieces if t)
        if len(_BARS) > 4096:  # widths change with the terminal: keep the recent ones
            _BARS.clear()
            _BARS[key] = got
    return got
