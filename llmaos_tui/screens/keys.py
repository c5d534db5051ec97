"""``?``: the keys of the screen below and of the app, with their ids for remapping."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static


class KeysScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "dismiss", "Close", id="keys.close"),
    ]
    DEFAULT_CSS = """
    KeysScreen { align: center middle; }
    KeysScreen > Vertical {
        width: 84; height: 80%; border: round $primary; background: $surface; padding: 0 1;
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
