"""The console's audit log: every change this console asked for, newest first.

Its targets, before and after texts and results came from the hosts: the table is a
:class:`SafeTable`, which cleans every cell."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from llmaos_tui.widgets.safe_table import SafeTable
from llmaos_tui.widgets.text import safe


class AuditScreen(Screen[None]):
    BINDINGS = [Binding("escape,q", "back", "Back", id="audit.back")]
    DEFAULT_CSS = """
    AuditScreen #title { height: 1; padding: 0 1; background: $panel; }
    AuditScreen DataTable { height: 1fr; }
    """
    COLUMNS = ("TIME", "OPERATOR", "HOST", "ACTION", "TARGET", "BEFORE", "AFTER", "RESULT")

    def __init__(self, entries: list[dict[str, Any]], path: str) -> None:
        super().__init__(name="audit")
        self.entries = entries
        self.path = path

    def compose(self) -> ComposeResult:
        yield Static(safe(f"Audit log · {len(self.entries)} entries · {self.path}"), id="title")
        yield SafeTable(cursor_type="row", id="audit-table")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*self.COLUMNS)
        for e in reversed(self.entries):
            table.add_row(
                str(e.get("time", ""))[:19].replace("T", " "),
                str(e.get("operator", "")),
                str(e.get("host", "")),
                str(e.get("action", "")),
                str(e.get("target", "")),
                str(e.get("before") or ""),
                str(e.get("after") or ""),
                str(e.get("result", "")),
            )
        table.focus()

    def action_back(self) -> None:
        self.dismiss()
