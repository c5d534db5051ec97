"""The ``/`` filter of the list screens (fleet, host processes, containers, requests).

Hidden until :meth:`FilterBar.open`; as the operator types it posts
:class:`FilterBar.Filtered`; Enter keeps the filter and hands the keys back
(:class:`FilterBar.Done`), Esc clears it and does the same. The screen decides what a
word matches; :func:`words_match` is the plain rule (every word a substring of one of
the fields, case-insensitively).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


def words_match(needle: str, fields: Iterable[str]) -> bool:
    """True when every word of ``needle`` is a substring of one of ``fields`` (case
    ignored); an empty needle matches everything."""
    words = needle.lower().split()
    if not words:
        return True
    texts = [f.lower() for f in fields]
    return all(any(w in t for t in texts) for w in words)


class FilterBar(Input):
    """An Input that hides when empty and closed; see the module's docstring."""

    DEFAULT_CSS = """
    FilterBar { display: none; height: 3; }
    FilterBar.-active { display: block; }
    """
    BINDINGS = [Binding("escape", "clear", "Clear filter", show=False, id="filter.clear")]

    class Filtered(Message):
        """The filter's text changed (``value``: what to match now)."""

        def __init__(self, bar: FilterBar, value: str) -> None:
            super().__init__()
            self.bar = bar
            self.value = value

        @property
        def control(self) -> FilterBar:
            return self.bar

    class Done(Message):
        """The bar gave the keys back (Enter or Esc): focus the list again."""

        def __init__(self, bar: FilterBar) -> None:
            super().__init__()
            self.bar = bar

        @property
        def control(self) -> FilterBar:
            return self.bar

    def __init__(self, what: str, *, id: str | None = None) -> None:
        super().__init__(placeholder=f"filter: {what} (Enter keeps, Esc clears)", id=id)

    def on_mount(self) -> None:
        self.cursor_blink = bool(getattr(self.app, "cursor_blink", True))

    @property
    def active(self) -> bool:
        """Shown: being typed in, or holding a filter that is kept."""
        return self.has_class("-active")

    def open(self) -> None:
        self.add_class("-active")
        self.focus()

    def clear_filter(self) -> None:
        """Empty it, hide it and give the keys back."""
        self.value = ""  # the Input posts its change, then this bar Filtered
        self._close()

    def action_clear(self) -> None:
        self.clear_filter()

    def _close(self) -> None:
        if not self.value:
            self.remove_class("-active")
        self.post_message(self.Done(self))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Filtered(self, event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._close()
