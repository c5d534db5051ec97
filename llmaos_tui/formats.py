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


_DOCKER_DOWN = (
    "cannot connect to the docker daemon",
    "error while fetching server api version",
    "docker engine at",
    "is the docker daemon running",
)
"""What the Docker SDK, the CLI and the agent's engine calls say when no engine answers."""
_NO_CONTAINER = re.compile(r"no such container|no container\b", re.IGNORECASE)
_DOCKER_SAYS = re.compile(r'\("(?P<msg>[^"]+)"\)\s*\Z')
"""The engine's own message at the end of a docker SDK error: ``...: Not Found ("...")``."""
_OS_WORDS = {
    "ConnectionRefusedError": "connection refused",
    "ConnectionResetError": "the connection was reset",
    "BrokenPipeError": "the connection was closed",
    "FileNotFoundError": "not found",
    "PermissionError": "permission denied",
}


def error_words(exc: BaseException, host: str = "") -> str:
    """What went wrong, in words for the operator, from an exception a call to ``host``
    raised: a Docker engine that does not answer, a missing container, a call that timed
    out, an answer that did not decode (msgspec's text through :func:`wire_words`), a
    refused connection; otherwise the exception's own message without backticks.

    Matched on the exception's class name and message, so this module needs neither the
    docker SDK nor msgspec (it is in the controller's layer)."""
    where = host or "the host"
    name = type(exc).__name__
    text = str(exc).strip()
    low = text.lower()
    if isinstance(exc, TimeoutError) or name in ("TimeoutError", "ReadTimeout", "Timeout"):
        return f"{where} did not answer in time"
    if type(exc).__module__.partition(".")[0] == "msgspec":
        return f"{where} sent an answer the console cannot read ({wire_words(text)})"
    if name == "ImageNotFound" or "no such image" in low:
        return "no such image"
    if _NO_CONTAINER.search(text) or name == "NotFound":
        return "no such container"
    if any(p in low for p in _DOCKER_DOWN) or name == "DockerException":
        return f"the Docker engine on {where} did not answer"
    if name == "LinkDown":
        return f"{where} is not connected" + (f": {text}" if text else "")
    if name in _OS_WORDS:
        return f"{where}: {_OS_WORDS[name]}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{where}: {exc.strerror[:1].lower()}{exc.strerror[1:]}"
    m = _DOCKER_SAYS.search(text)
    if m is not None and name in ("APIError", "NotFound", "ContainerError"):
        text = m["msg"]
    text = text.replace("`", "")
    return text or f"{where}: an unexpected error ({name})"
