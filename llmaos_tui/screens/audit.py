"""The console's audit log: every change this console asked for, newest first.

Its targets, before and after texts and results came from the hosts: the table is a
:class:`SafeTable`, which cleans every cell, and the detail line is drawn with ``safe``.

A refusal's reason can be longer than a terminal is wide, and RESULT is the last column:
the line under the table shows the cursor's entry whole (its result with the reason, the
change, who and when), wrapped to the width, so nothing is cut at 80 columns.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from llmaos_tui.widgets.key_footer import KeyFooter
from llmaos_tui.widgets.safe_table import SafeTable
from llmaos_tui.widgets.text import safe

DETAIL_CHARS = 600
"""At most this much of an entry in the detail line (about 8 lines at 80 columns), the cut
marked with an ellipsis: the table keeps most of the screen."""


def entry_words(e: dict[str, Any]) -> str:
    """One entry whole, in words: "RESULT · ACTION on HOST · TARGET: BEFORE → AFTER ·
    OPERATOR at TIME" (parts that are empty left out)."""
    change = str(e.get("target", ""))
    before, after = str(e.get("before") or ""), str(e.get("after") or "")
    if before or after:
        change += f": {before or '?'} → {after or '?'}"
    when = str(e.get("time", ""))[:19].replace("T", " ")
    who = " at ".join(p for p in (str(e.get("operator", "")), when) if p)
    parts = [
        str(e.get("result", "")) or "no result recorded",
        f"{e.get('action', '')} on {e.get('host', '')}",
        change,
        who,
    ]
    text = " · ".join(p for p in parts if p)
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


class AuditScreen(Screen[None]):
    OPENED_BY = "audit"
    """The app action whose key opens this screen: the footer leaves it out."""
    BINDINGS = [Binding("escape,q", "back", "Back", id="audit.back")]
    DEFAULT_CSS = """
    AuditScreen #title { height: 1; padding: 0 1; background: $panel; }
    AuditScreen DataTable { height: 1fr; }
    AuditScreen #detail {
        height: auto; max-height: 9; padding: 0 1; background: $panel; color: $text;
    }
    """
    COLUMNS = ("TIME", "OPERATOR", "HOST", "ACTION", "TARGET", "BEFORE", "AFTER", "RESULT")

    def __init__(self, entries: list[dict[str, Any]], path: str) -> None:
        super().__init__(name="audit")
        self.entries = entries
        self.path = path
        self._shown = list(reversed(entries))

    def compose(self) -> ComposeResult:
        yield Static(safe(f"Audit log · {len(self.entries)} entries · {self.path}"), id="title")
        yield SafeTable(cursor_type="row", id="audit-table")
        yield Static("", id="detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*self.COLUMNS)
        for e in self._shown:
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
        self._detail(0)
        table.focus()

    def _detail(self, row: int) -> None:
        text = entry_words(self._shown[row]) if 0 <= row < len(self._shown) else "no entries"
        self.query_one("#detail", Static).update(safe(text))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def action_back(self) -> None:
        self.dismiss()
