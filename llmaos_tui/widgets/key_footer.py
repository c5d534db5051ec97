"""The footer with the main keys first: help, quit, kill, requests and filter.

Textual's footer lists the focused widget's keys, then the screen's, then the app's, and
cuts what does not fit: at 80 and 120 columns the app's help and quit (and the host
screen's kill and requests) were the ones cut. Here the keys whose action is in
:data:`MAIN` come first, in that order, then the rest in Textual's order.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

MAIN = ("keys", "quit", "signal", "requests", "filter")
"""Actions drawn before every other key, whichever widget or screen binds them."""


def _rank(w: Widget) -> int:
    if isinstance(w, FooterKey) and w.action in MAIN:
        return MAIN.index(w.action)
    return len(MAIN)


class KeyFooter(Footer):
    """Textual's footer, its keys ordered main keys first (see :data:`MAIN`)."""

    def compose(self) -> ComposeResult:
        # A stable sort: the palette key is docked right whatever its place.
        yield from sorted(super().compose(), key=_rank)
