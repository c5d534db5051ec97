"""What the console remembers between runs: the theme, the host screen's sort and panels,
the fleet table's sort and filter.

One JSON file in the config directory (``settings.json`` beside ``keys.toml``), written
whole to a temporary file in the same folder and renamed over the old one, so a crash
mid-write leaves the old file, never half a new one. A file that cannot be read, is not
JSON, or holds a key or value this version does not know is reported (the caller shows
it at start) and that part ignored: settings are a convenience, never a reason not to
start. The file holds only what the operator chose, no host's text but the filter they
typed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from llmaos_tui.theming import config_dir

PANELS = ("cores", "gpus", "procs")
MAX_FILTER = 200  # characters: a filter longer than this was not typed by hand


@dataclass(frozen=True)
class Settings:
    """Each field None: not chosen yet, the console's default applies."""

    theme: str | None = None
    host_sort: str | None = None
    host_reverse: bool | None = None
    host_panels: tuple[str, ...] | None = None
    fleet_sort: str | None = None
    fleet_reverse: bool | None = None
    fleet_filter: str | None = None


def default_path() -> Path:
    return config_dir() / "settings.json"


def _check(name: str, value: object) -> object:
    """``value`` for the field ``name``, or ValueError saying what is wrong with it."""
    if value is None:
        return None
    if name in ("host_reverse", "fleet_reverse"):
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if name == "host_panels":
        if not (isinstance(value, list) and value and all(v in PANELS for v in value)):
            raise ValueError(f"must be a list of at least one of {', '.join(PANELS)}")
        return tuple(dict.fromkeys(value))
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if name == "fleet_filter" and len(value) > MAX_FILTER:
        raise ValueError(f"longer than {MAX_FILTER} characters")
    if name != "fleet_filter" and not value.isprintable():
        raise ValueError("holds control characters")
    return value


def load(path: Path) -> tuple[Settings, list[str]]:
    """The settings in ``path`` (defaults where it has none) and the problems found."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings(), []
    except (OSError, UnicodeDecodeError) as exc:
        return Settings(), [f"{path}: cannot read it ({type(exc).__name__}); settings not used"]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Settings(), [f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); not used"]
    if not isinstance(data, dict):
        return Settings(), [f"{path}: not a settings object; not used"]
    known = {f.name for f in fields(Settings)}
    problems = [f"{path}: unknown setting {k!r}; ignored" for k in data if k not in known]
    values: dict[str, object] = {}
    for name in known & set(data):
        try:
            values[name] = _check(name, data[name])
        except ValueError as exc:
            problems.append(f"{path}: {name} {exc}; ignored")
    return Settings(**values), sorted(problems)  # type: ignore[arg-type]


def save(path: Path, settings: Settings) -> None:
    """Write ``settings`` to ``path`` atomically (its folder made, private to the user)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {k: v for k, v in asdict(settings).items() if v is not None}
    if "host_panels" in data:
        data["host_panels"] = list(data["host_panels"])
    fd, tmp = tempfile.mkstemp(prefix=".settings.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
