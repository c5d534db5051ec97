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
    "NA", "ago", "bar", "fixed", "human_bytes", "level_class", "percent", "safe", "safe_cell",
    "safe_lines", "safe_log", "safe_text", "sparkline",
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
    if width <= 0:
        return t
    if frac is None:
        return t.append(NA.center(width), empty)
    eighths = round(min(max(frac, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    t.append("█" * full, fill)
    if full < width:
        t.append(_EIGHTHS[part] if part else "", fill)
        rest = width - full - (1 if part else 0)
        t.append("─" * rest, empty)
    return t
