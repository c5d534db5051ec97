"""A DataTable whose cells, labels and column headers are always safe to draw.

Every table of the console shows what hosts report (names, command lines, images,
reasons); a str cell of a plain DataTable is read as Rich markup (``[red]x`` turns red,
``[/]`` raises) and its control characters reach the terminal. Here each cell goes
through :func:`llmaos_tui.widgets.text.safe_cell` on its way in, so no screen has to
remember to.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets._data_table import CellType, ColumnKey, RowKey

from llmaos_agent.safetext import clean
from llmaos_tui.widgets.text import safe_cell, safe_text


class SafeTable(DataTable[Any]):
    """DataTable with every cell cleaned as it is added or updated."""

    def add_column(
        self,
        label: Any,
        *,
        width: int | None = None,
        key: str | None = None,
        default: CellType | None = None,
    ) -> ColumnKey:
        shown = safe_text(label) if isinstance(label, Text) else Text(clean(str(label)))
        return super().add_column(shown, width=width, key=key, default=safe_cell(default))

    def add_row(
        self,
        *cells: CellType,
        height: int | None = 1,
        key: str | None = None,
        label: Any = None,
    ) -> RowKey:
        label = None if label is None else safe_cell(label)
        return super().add_row(*(safe_cell(c) for c in cells), height=height, key=key, label=label)

    def update_cell(
        self,
        row_key: RowKey | str,
        column_key: ColumnKey | str,
        value: CellType,
        *,
        update_width: bool = False,
    ) -> None:
        super().update_cell(row_key, column_key, safe_cell(value), update_width=update_width)

    def put_cell(self, row_key: RowKey, column_key: ColumnKey, value: CellType) -> None:
        """Set a cell, cleaned, without redrawing anything: the caller refreshes the row
        (:meth:`DataTable.refresh_row`) once its cells are set. ``update_cell`` redraws
        the whole table for each cell, which with a thousand rows updating was most of a
        frame's work. The keys must exist."""
        self._data[row_key][column_key] = safe_cell(value)
        self._update_count += 1  # DataTable's row renderables are cached on this
