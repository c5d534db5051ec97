"""The footer with the main keys first: help, quit, kill, requests and filter.

Textual's footer lists the focused widget's keys, then the screen's, then the app's, and
cuts what does not fit: at 80 and 120 columns the app's help and quit (and the host
screen's kill and requests) were the ones cut. Here the keys whose action is in
:data:`MAIN` come first, in that order, then the rest in Textual's order.

A screen opened by an app key (``r`` requests, ``c`` containers, ``A`` audit, ``f``
fleet) names that action in its ``OPENED_BY`` class attribute; its footer leaves that key
out, as "r Requests" on the requests screen only takes room from the keys that act there.
The key itself still works.

Textual's footer rebuilds its keys (a dozen widgets, mounted and styled) on every bindings
update of its screen, several per focus change and a few more at start, when they are
mostly the same keys: here a rebuild waits for the next refresh (one for all the updates
before it), happens only when a key, its display, description, state or tooltip changed,
and a footer whose screen is not shown waits until it is (showing a screen updates its
bindings).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

MAIN = ("keys", "quit", "signal", "requests", "filter")
"""Actions drawn before every other key, whichever widget or screen binds them."""


def _rank(w: Widget) -> int:
    if isinstance(w, FooterKey) and w.action in MAIN:
        return MAIN.index(w.action)
    return len(MAIN)


def _seen(screen: Screen[Any]) -> bool:
    """Whether ``screen`` can be seen: on top, or under screens that let it show through.

    Textual's ``is_current`` also counts the screen just under the top one, however
    opaque the top is: the fleet screen under the one host's screen at start rebuilt its
    footer (a dozen keys mounted, about 17 ms) before the first frame, for nothing."""
    stack = screen.app.screen_stack
    if screen not in stack:
        return False
    return all(s.styles.background.a < 1 for s in stack[stack.index(screen) + 1 :])


class KeyFooter(Footer):
    """Textual's footer, its keys ordered main keys first (see :data:`MAIN`), less the
    key that opened the screen it is on (the screen's ``OPENED_BY``)."""

    _drawn: object = None
    """What the keys shown were composed from (:meth:`_keys_now`)."""
    _pending = False
    """A rebuild is asked for after the next refresh."""

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._pending:
            self._pending = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._pending = False
        if not self.is_attached or not _seen(self.screen):
            return  # its screen's resume updates the bindings, and so the keys
        if self._keys_now() != self._drawn:
            await self.recompose()

    def _keys_now(self) -> object:
        """Everything :meth:`compose` draws the keys from."""
        if not self._bindings_ready:
            return None
        app = self.app
        palette = app.COMMAND_PALETTE_BINDING
        return (
            getattr(self.screen, "OPENED_BY", None),
            self.show_command_palette and app.ENABLE_COMMAND_PALETTE,
            tuple(
                (
                    key,
                    b.key,
                    b.action,
                    b.description,
                    b.tooltip,
                    b.group,
                    enabled,
                    tooltip,
                    app.get_key_display(b) if b.show or key == palette else None,
                )
                for key, (_node, b, enabled, tooltip) in self.screen.active_bindings.items()
                if b.show or key == palette
            ),
        )

    def compose(self) -> ComposeResult:
        self._drawn = self._keys_now()
        opener = getattr(self.screen, "OPENED_BY", None)
        keys = [
            w
            for w in super().compose()
            if not (opener is not None and isinstance(w, FooterKey) and w.action == opener)
        ]
        for w in keys:
            if isinstance(w, FooterKey) and not w.has_class("-command-palette"):
                # Bound to the footer's compact, a key is born compact (FooterKey's
                # default), then made not: two style updates of each key, a dozen keys a
                # footer. Born with the footer's value, it has neither. (The palette key
                # is not bound: it keeps the default.)
                w.set_reactive(FooterKey.compact, self.compact)
                w.set_class(self.compact, "-compact", update=False)
        # A stable sort: the palette key is docked right whatever its place.
        yield from sorted(keys, key=_rank)
