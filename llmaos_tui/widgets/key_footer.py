"""The footer with the main keys first: help, quit, kill, requests and filter.

Textual's footer lists the focused widget's keys, then the screen's, then the app's, and
cuts what does not fit: at 80 and 120 columns the app's help and quit (and the host
screen's kill and requests) were the ones cut. Here the keys whose action is in
:data:`MAIN` come first, in that order, then the rest in Textual's order.

A screen opened by an app key (``r`` requests, ``c`` containers, ``A`` audit, ``f``
fleet) names that action in its ``OPENED_BY`` class attribute; its footer leaves that key
out, as "r Requests" on the requests screen only takes room from the keys that act there.
The key itself still works.
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
    """Textual's footer, its keys ordered main keys first (see :data:`MAIN`), less the
    key that opened the screen it is on (the screen's ``OPENED_BY``)."""

    def compose(self) -> ComposeResult:
        opener = getattr(self.screen, "OPENED_BY", None)
        keys = [
            w
            for w in super().compose()
            if not (opener is not None and isinstance(w, FooterKey) and w.action == opener)
        ]
        # A stable sort: the palette key is docked right whatever its place.
        yield from sorted(keys, key=_rank)
