"""Numbers as the console writes them: sizes, percentages, sparklines, ages.

Plain strings, no Rich: the CLI's text output and the widgets both use them (the widgets
through :mod:`llmaos_tui.widgets.text`, which adds bars and sanitised Text on top), and the
controller and CLI must not load Rich (tests/test_layering.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NA = "n/a"
_SPARK = "▁▂▃▄▅▆▇█"


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


_BOUND = re.compile(
    r"Expected `(?P<type>\w+)`(?P<len> of length)? (?P<op>[<>]=) (?P<n>\d+)"
    r"(?: - at `\$\.?(?P<at>[^`]*)`)?\Z"
)
_FIELD_WORDS = {"cpus": "cores", "gpus": "GPUs", "mem": "memory", "argv": "the command"}
_SIZES = frozenset({"mem"})


def wire_words(message: str) -> str:
    """A wire validation message (msgspec's ``Expected `int` <= 1000 - at `$.priority```)
    in words: ``priority: at most 1000``; sizes in human units, lengths in characters or
    items. A message of another shape keeps its text, without the backticks, the field it
    names first."""
    m = _BOUND.match(message.strip())
    if m is None:
        base, _, at = message.strip().partition(" - at `")
        where = at.rstrip("`").lstrip("$").lstrip(".")
        text = base.replace("`", "")
        return f"{_FIELD_WORDS.get(where, where)}: {text}" if where else text
    field = m["at"] or ""
    n = int(m["n"])
    most = m["op"] == "<="
    if m["len"]:
        unit = "characters" if m["type"] == "str" else "items"
        value = f"{n} {unit}" if n != 1 else f"1 {unit[:-1]}"
    else:
        value = human_bytes(n) if field.split(".")[-1] in _SIZES else str(n)
    words = f"{'at most' if most else 'at least'} {value}"
    name = _FIELD_WORDS.get(field, field.replace(".", " "))
    return f"{name}: {words}" if name else words
