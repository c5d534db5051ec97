"""A table kept in step with keyed rows: only the difference is applied.

DESIGN: "update only changed, visible cells"; clear-and-refill doubles the cost of a
large table, moves the cursor and drops the sort. A :class:`SyncedTable` is given the
whole list of rows each time (a stable key each, the cells, and optionally the values to
sort by), and it adds the new rows, removes the gone ones, updates only the cells that
changed, reorders only when the order moved, and keeps the cursor on the row with the
same key. A click on a column header sorts by that column (again: the other way); with no
sort column the rows keep the order they were given in.

It is a :class:`SafeTable`: every cell is cleaned on its way in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.widgets import DataTable
from textual.widgets._data_table import RowKey

from llmaos_tui.widgets.safe_table import SafeTable


class Col(NamedTuple):
    """A column: its key (also what ``update_cell`` names), its header, a fixed width
    (None: as wide as its widest cell) and whether it holds numbers (right-justified
    header, biggest first on its first sort)."""

    key: str
    label: str
    width: int | None = None
    numeric: bool = False


class Row(NamedTuple):
    """A row: its stable key, its cells (one per column) and, optionally, the values to
    sort it by (one per column; None: the cells' text)."""

    key: str
    cells: Sequence[Any]
    sort: Sequence[Any] | None = None


def _sig(cell: Any) -> Any:
    """What must stay equal for a cell not to be redrawn (Text's == looks at the text and
    spans only, not its style or justification)."""
    if isinstance(cell, Text):
        return (cell.plain, tuple(cell.spans), str(cell.style), cell.justify)
    return cell


def _sort_value(v: Any) -> Any:
    return v.plain if isinstance(v, Text) else v


class SyncedTable(SafeTable):
    """A :class:`SafeTable` of keyed rows, updated by :meth:`sync`."""

    DEFAULT_CSS = """
    SyncedTable { height: 1fr; }
    """

    def __init__(
        self, columns: Sequence[Col], *, id: str | None = None, zebra_stripes: bool = False
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=zebra_stripes)
        self.cols = tuple(columns)
        self._sigs: dict[str, tuple[Any, ...]] = {}
        """The cells of each row shown, as compared (see :func:`_sig`)."""
        self._sort_values: dict[str, tuple[Any, ...]] = {}
        self._given: list[str] = []
        """The keys in the order the last sync gave them."""
        self.sort_key: str | None = None
        self.reverse = False

    def on_mount(self) -> None:
        for c in self.cols:
            self.add_column(self._label(c), key=c.key, width=c.width)

    def _label(self, c: Col) -> Text:
        arrow = ("▼" if self.reverse else "▲") if c.key == self.sort_key else ""
        return Text(c.label + arrow, justify="right" if c.numeric else "left")

    # ---------------------------------------------------------------- data

    @property
    def keys(self) -> list[str]:
        """The keys of the rows shown, in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        return str(self.ordered_rows[self.cursor_row].key.value)

    def sync(self, rows: Iterable[Row]) -> None:
        """Show exactly ``rows``: add, remove and update what differs, nothing else."""
        keep = self.selected_key
        given: list[str] = []
        wanted: dict[str, Row] = {}
        for r in rows:
            if r.key in wanted:
                raise ValueError(f"two rows with the key {r.key!r}")
            if len(r.cells) != len(self.cols):
                raise ValueError(f"row {r.key!r}: {len(r.cells)} cells, {len(self.cols)} columns")
            wanted[r.key] = r
            given.append(r.key)
        for key in [k for k in self._sigs if k not in wanted]:
            self.remove_row(key)
            del self._sigs[key]
            del self._sort_values[key]
        for key, r in wanted.items():
            sigs = tuple(_sig(c) for c in r.cells)
            old = self._sigs.get(key)
            if old is None:
                self.add_row(*r.cells, key=key)
            elif old != sigs:
                for col, before, after, cell in zip(self.cols, old, sigs, r.cells, strict=True):
                    if before != after:
                        self.update_cell(key, col.key, cell, update_width=col.width is None)
            self._sigs[key] = sigs
            values = r.sort if r.sort is not None else r.cells
            self._sort_values[key] = tuple(_sort_value(v) for v in values)
        self._given = given
        self._reorder(keep)

    def _order(self) -> list[str]:
        if self.sort_key is None:
            return list(self._given)
        i = next(n for n, c in enumerate(self.cols) if c.key == self.sort_key)
        values = {k: self._sort_values[k][i] for k in self._given}
        known = [k for k in self._given if values[k] is not None]
        # Stable in reverse too: ties keep the given order; unknown values go last.
        known.sort(key=values.__getitem__, reverse=self.reverse)
        return known + [k for k in self._given if values[k] is None]

    def _reorder(self, keep: str | None) -> None:
        order = self._order()
        if order != self.keys:
            # What DataTable.sort does, from an order of keys rather than cell values.
            self._row_locations = TwoWayDict({RowKey(k): i for i, k in enumerate(order)})
            self._update_count += 1
            self.refresh()
        if keep is not None and keep in self._sigs:
            row = self.get_row_index(keep)
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False)

    # ------------------------------------------------------------- sorting

    def sort_by(self, key: str | None, reverse: bool | None = None) -> None:
        """Sort by a column (None: the given order); the same column again flips it."""
        if key is not None and key not in {c.key for c in self.cols}:
            raise ValueError(f"no column {key!r}")
        if reverse is None:
            numeric = any(c.key == key and c.numeric for c in self.cols)
            reverse = not self.reverse if key == self.sort_key else numeric
        self.sort_key, self.reverse = key, reverse
        for c in self.cols:
            self.columns[c.key].label = self._label(c)  # type: ignore[index]
        self._reorder(self.selected_key)
        self.refresh()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))
