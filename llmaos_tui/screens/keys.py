"""``?``: the keys of the screen below and of the app, with their ids for remapping; and
``keys.toml``, the user's remapping, read and checked before the console starts."""

from __future__ import annotations

import difflib
import itertools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.dom import DOMNode
from textual.keys import Keys, _character_to_key, format_key, key_to_character
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Static

from llmaos_tui.theming import config_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class KeysScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="keys.close"),
    ]
    DEFAULT_CSS = """
    KeysScreen { align: center middle; }
    KeysScreen > Vertical {
        width: 84; max-width: 100%; height: 80%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    KeysScreen Static { color: $text-muted; height: auto; }
    KeysScreen DataTable { height: 1fr; }
    """

    def __init__(self, below: Screen[object]) -> None:
        super().__init__()
        self.below = below

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                "Keys here. Remap any by its id in ~/.config/llmaos-tui/keys.toml, "
                'e.g. "app.quit" = "ctrl+q". Esc closes.'
            )
            yield DataTable(cursor_type="row", id="keys")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("KEY", "ACTION", "ID")
        # Ours (they have ids) first, then the widgets' stock keys.
        actives = sorted(
            self.below.active_bindings.items(), key=lambda kv: kv[1].binding.id is None
        )
        for key, active in actives:
            b = active.binding
            display = self.app.get_key_display(b)
            table.add_row(Text(display), Text(b.description or b.action), Text(b.id or ""), key=key)


# --- keys.toml --------------------------------------------------------------------------

MODIFIERS = ("ctrl", "shift", "alt", "meta", "super", "hyper")


@dataclass(frozen=True)
class _Bound:
    """One binding of one class: its id (or action), what it does, its default keys."""

    owner: str
    id: str | None
    action: str
    description: str
    keys: frozenset[str]

    @property
    def label(self) -> str:
        name = self.description or self.action
        return f"{name} ({self.id})" if self.id else name


def _bindings_of(cls: type[DOMNode]) -> list[_Bound]:
    """Every binding ``cls`` has, its bases' included, one entry per id (or action)."""
    found: dict[tuple[str | None, str], set[str]] = {}
    about: dict[tuple[str | None, str], Binding] = {}
    typing = issubclass(cls, Input)  # its editing keys work only while one types in it
    for base in reversed(cls.__mro__):
        for b in Binding.make_bindings(base.__dict__.get("BINDINGS", [])):
            if typing and b.id is None:
                continue
            k = (b.id, b.action) if b.id is None else (b.id, "")
            found.setdefault(k, set()).add(b.key)
            about[k] = b
    return [
        _Bound(cls.__name__, b.id, b.action, b.description, frozenset(found[k]))
        for k, b in about.items()
    ]


def places(app: type[App[Any]]) -> list[tuple[str, list[type[DOMNode]]]]:
    """Where bindings are live together: each screen with the widgets on it that have
    keys of their own, and the app's (given: screens do not import the app; its keys
    work on every screen)."""
    # Imported when asked: the app imports this module before it has its screens.
    from llmaos_tui.screens import (  # noqa: PLC0415
        audit,
        containers,
        dialogs,
        fleet,
        host,
        move,
        plan,
        proc_detail,
        requests,
        trust,
    )
    from llmaos_tui.widgets.filter_bar import FilterBar  # noqa: PLC0415
    from llmaos_tui.widgets.heatmap import HeatMap  # noqa: PLC0415
    from llmaos_tui.widgets.host_table import HostTable  # noqa: PLC0415
    from llmaos_tui.widgets.process_table import ProcessTable  # noqa: PLC0415

    widgets: dict[type[Screen[Any]], list[type[DOMNode]]] = {
        fleet.FleetScreen: [HostTable, HeatMap, FilterBar],
        host.HostScreen: [ProcessTable, FilterBar],
        requests.RequestsScreen: [FilterBar],
        containers.ContainersScreen: [FilterBar],
    }
    screens: list[type[Screen[Any]]] = [
        fleet.FleetScreen, host.HostScreen, requests.RequestsScreen, requests.LogScreen,
        requests.SubmitScreen, containers.ContainersScreen, containers.ContainerLogScreen,
        audit.AuditScreen, plan.PlanScreen, move.MoveScreen, trust.TrustScreen,
        proc_detail.ProcDetailScreen,
        dialogs.PromptScreen, dialogs.ChoiceScreen, dialogs.ConfirmScreen, KeysScreen,
    ]  # fmt: skip
    return [(_screen_name(s), [*widgets.get(s, []), s, app]) for s in screens]


def _screen_name(cls: type[Screen[Any]]) -> str:
    words = re.sub(r"(?<!^)([A-Z])", r" \1", cls.__name__.removesuffix("Screen")).lower()
    return f"the {words} screen"


def _key_ok(key: str) -> bool:
    *mods, base = key.split("+") if key != "+" else ["+"]
    if any(m not in MODIFIERS for m in mods) or not base:
        return False
    return len(base) == 1 or base in _KEY_NAMES or key_to_character(base) is not None


_KEY_NAMES = frozenset(k.value for k in Keys if "+" not in k.value and "<" not in k.value)


def _normal(keys: str) -> list[str]:
    """``"?,ctrl+q"`` -> ``["question_mark", "ctrl+q"]``: the names Textual matches."""
    out = []
    for part in keys.split(","):
        k = part.strip()
        out.append(_character_to_key(k) if len(k) == 1 else k)
    return out


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    # An unquoted dotted key (procs.sort_cpu = "c") is a TOML table: the same id.
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{name}."))
        else:
            out[name] = v
    return out


def _line_of(lines: list[str], binding_id: str) -> int:
    """The line that sets ``binding_id`` (0 when not found: tomllib gives no positions)."""
    last = binding_id.rpartition(".")[2]
    for pattern in (re.escape(binding_id), re.escape(last)):
        rx = re.compile(r"\s*(?:\"|')?" + pattern + r"(?:\"|')?\s*=")
        for i, line in enumerate(lines):
            if rx.match(line):
                return i + 1
    return 0


@dataclass
class KeysFile:
    """What ``keys.toml`` remaps, and what it asked for that is not applied, and why."""

    keymap: dict[str, str]
    problems: list[str]


def load_keys(app: type[App[Any]], path: Path | None = None) -> KeysFile:
    """Binding id -> keys from ``keys.toml``, every line checked. A TOML mistake, an id no
    binding has, a value that is not keys, and a remap that gives a key to a binding
    while another binding on the same screen has it (one of them would never fire, or
    Textual drops the other) are each a problem, said with its line; that line is not
    applied, so the other binding keeps its key. A file that is not TOML remaps nothing.
    """
    path = path or config_dir() / "keys.toml"
    if not path.is_file():
        return KeysFile({}, [])
    try:
        text = path.read_text(encoding="utf-8")
        data = _flatten(tomllib.loads(text))
    except (OSError, UnicodeDecodeError) as exc:
        return KeysFile({}, [f"{path}: cannot read it ({exc.__class__.__name__}); no key remapped"])
    except tomllib.TOMLDecodeError as exc:
        return KeysFile({}, [f"{path}: not valid TOML, no key remapped: {exc}"])
    lines = text.splitlines()
    located = {k: _line_of(lines, k) for k in data}
    bound = [(name, [b for cls in chain for b in _bindings_of(cls)]) for name, chain in places(app)]
    ids = {b.id for _, bs in bound for b in bs if b.id}
    found: list[tuple[int, str]] = []
    keymap: dict[str, str] = {}
    for k, v in data.items():
        if k not in ids:
            near = difflib.get_close_matches(k, sorted(ids), n=1)
            hint = f"did you mean {near[0]!r}?" if near else "? in the console lists them"
            found.append((located[k], f"{k!r}: no binding has this id ({hint})"))
        elif not isinstance(v, str) or not v.strip():
            found.append((located[k], f'{k!r}: keys must be a string, e.g. "ctrl+q" or "f5,r"'))
        elif bad := [p for p in v.split(",") if not _key_ok(p.strip())]:
            names = ", ".join(map(repr, bad))
            found.append((located[k], f"{k!r}: {names} is not a key (e.g. ctrl+q, f5, r)"))
        else:
            keymap[k] = ",".join(_normal(v))
    # Leaving a remap out gives its binding its own keys back, which may meet another
    # remap: again until none clashes (each pass leaves one out at least).
    while clashes := _clashes(bound, keymap, data):
        for mid, text in clashes:
            found.append((located[mid], text))
            keymap.pop(mid, None)
    found.sort(key=lambda lt: lt[0])
    where = {0: str(path)} | {n: f"{path}, line {n}" for n, _ in found if n}
    return KeysFile(keymap, [f"{where[n]}: {what}; not applied" for n, what in found])


def _clashes(
    bound: list[tuple[str, list[_Bound]]], keymap: dict[str, str], raw: dict[str, Any]
) -> list[tuple[str, str]]:
    """Each remap that gives a key to its binding while another binding on the same
    screen has it, and it had not before (a screen's own Esc over the app's is by
    design), with the words that say so."""
    seen: dict[tuple[str, str, str], list[str]] = {}
    order = {k: i for i, k in enumerate(raw)}
    for place, bs in bound:
        after = {b: frozenset(keymap[b.id].split(",")) if b.id in keymap else b.keys for b in bs}
        for a, b in itertools.combinations(bs, 2):
            if a.id is not None and a.id == b.id:
                continue  # the same binding on a base and on the class
            for key in sorted(after[a] & after[b] - (a.keys & b.keys)):
                # Of two remaps the later line is left out: the first one keeps the key.
                moved = max((x for x in (a, b) if x.id in keymap), key=lambda x: order[str(x.id)])
                other = b if moved is a else a
                seen.setdefault((str(moved.id), key, other.label), []).append(place)
    return [
        (
            mid,
            f"{mid!r} = {raw[mid]!r}: {format_key(key)} is already {label} on "
            f"{', '.join(where)}, where only one of the two could work; give one another key",
        )
        for (mid, key, label), where in seen.items()
    ]
