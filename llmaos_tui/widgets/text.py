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

NA = "n/a"
_SPARK = "▁▂▃▄▅▆▇█"
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


def human_bytes(n: int | None) -> str:
    if n is None:
        return NA
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
        value /= 1024
    return NA  # pragma: no cover - the loop always returns


def percent(x: float | None, width: int = 5) -> str:
    """A fraction as a percentage, right-aligned; "n/a" when unknown."""
    if x is None:
        return NA.rjust(width)
    return f"{x * 100:{width - 1}.0f}%"


def fixed(x: float | None, digits: int = 2) -> str:
    return NA if x is None else f"{x:.{digits}f}"


def sparkline(values: Sequence[float | None], width: int, top: float = 1.0) -> str:
    """The last ``width`` values as block characters, scaled to [0, top]."""
    tail = list(values)[-width:] if width > 0 else []
    out = []
    for v in tail:
        if v is None:
            out.append(" ")
            continue
        frac = min(max(v / top, 0.0), 1.0) if top > 0 else 0.0
        out.append(_SPARK[min(int(frac * len(_SPARK)), len(_SPARK) - 1)])
    return "".join(out).rjust(width)


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


def level_class(frac: float | None, prefix: str) -> str:
    """The component class for a load: low, mid or high."""
    if frac is None or frac < 0.5:
        return f"{prefix}--low"
    return f"{prefix}--mid" if frac < 0.85 else f"{prefix}--high"


def ago(since: float | None, now: float) -> str:
    """How long since ``since`` (epoch s), as top and docker ps write it: 42s, 7m, 3h, 2d."""
    if since is None:
        return ""
    s = max(0, int(now - since))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h" if s < 172800 else f"{s // 86400}d"
