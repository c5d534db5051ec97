"""Theme files (TOML) turned into Textual themes, and the user's key map.

Themes come from the package's ``themes/`` folder, then the user's
``~/.config/llmaos-tui/themes``; a user theme of the same name wins. Each file
holds the fields of ``textual.theme.Theme``; anything else is refused with the
file and the key named.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import platformdirs
from textual.theme import Theme

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_THEME = "llmaos-dark"
_FIELDS = {f.name for f in dataclasses.fields(Theme)}


class ConfigError(ValueError):
    pass


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir("llmaos-tui", appauthor=False))


def builtin_theme_dir() -> Path:
    here = Path(__file__).resolve().parent
    installed = here / "themes"  # the wheel carries themes/ inside the package
    return installed if installed.is_dir() else here.parent / "themes"


def load_theme_file(path: Path) -> Theme:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown theme key(s) {', '.join(unknown)}")
    if not isinstance(data.get("name"), str) or not isinstance(data.get("primary"), str):
        raise ConfigError(f"{path}: a theme needs at least 'name' and 'primary'")
    try:
        return Theme(**data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_themes(extra_dirs: list[Path] | None = None) -> tuple[dict[str, Theme], list[str]]:
    """All themes by name, and the errors of files that could not be loaded."""
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    for d in [builtin_theme_dir(), config_dir() / "themes", *(extra_dirs or [])]:
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.toml")):
            try:
                t = load_theme_file(f)
            except ConfigError as exc:
                errors.append(str(exc))
                continue
            themes[t.name] = t
    return themes, errors


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """Binding id -> keys, from ``keys.toml`` (``"app.quit" = "ctrl+q"``)."""
    path = path or config_dir() / "keys.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise ConfigError(f'{path}: keys must be strings, e.g. "app.quit" = "ctrl+q" ({bad})')
    return {str(k): str(v) for k, v in data.items()}
