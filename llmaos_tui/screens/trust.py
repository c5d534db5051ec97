"""An unknown SSH host key: show its fingerprint and trust it only on an explicit ``t``.

Trusting writes the key to the known_hosts file named here; refusing (``r`` or
Esc) leaves the host down. The focus starts on Refuse and the Trust button
cannot take the focus, so a stray Enter refuses and never trusts. A changed key
never comes here: it is refused outright.

``on_answer`` hears the answer exactly once: the key pressed, or a refusal when the
dialog goes away unanswered (the palette's Fleet pops every screen above the fleet),
so the host asking is never left waiting for an answer that cannot come.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from llmaos_agent.safetext import clean


class TrustScreen(ModalScreen[bool]):
    AUTO_FOCUS = "#refuse"
    BINDINGS = [
        Binding("t", "trust", "Trust", id="trust.accept"),
        Binding("r,escape", "refuse", "Refuse", key_display="r/Esc", id="trust.refuse"),
    ]
    DEFAULT_CSS = """
    TrustScreen { align: center middle; }
    TrustScreen > Vertical {
        width: 90; max-width: 100%; height: auto;
        border: thick $warning; background: $surface; padding: 1 2;
    }
    TrustScreen #trust-title { text-style: bold; color: $warning; margin-bottom: 1; }
    TrustScreen #trust-fingerprint {
        text-style: bold; color: $accent; background: $panel; padding: 0 1; margin: 1 0;
    }
    TrustScreen #trust-body { color: $text; }
    TrustScreen #trust-note { color: $text-muted; margin-top: 1; }
    TrustScreen Horizontal { height: auto; margin-top: 1; align-horizontal: right; }
    TrustScreen Button { margin-left: 2; }
    """

    def __init__(
        self,
        host_name: str,
        target: str,
        key_type: str,
        fingerprint: str,
        known_hosts: str,
        *,
        on_answer: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__(name=f"trust:{host_name}")
        self.host_name = host_name
        self.target = target
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts
        self.on_answer = on_answer
        self.answer: bool | None = None
        """True once trusted, False once refused; None while unanswered."""

    def compose(self) -> ComposeResult:
        # Text, never markup; and cleaned: the host's name and target are the operator's,
        # but the key type is what the server sent.
        where = clean(
            self.host_name
            if self.target in ("", self.host_name)
            else (f"{self.host_name} ({self.target})")
        )
        with Vertical():
            yield Static(Text(f"Unknown host key: {where}"), id="trust-title")
            key_type = clean(self.key_type)
            yield Static(
                Text(
                    f"The host presented a key of type {key_type} that is not in your "
                    "known_hosts. Compare its fingerprint with the one the host's "
                    "administrator gives you (ssh-keygen -lf on the host's key):"
                ),
                id="trust-body",
            )
            yield Static(Text(clean(f"{key_type}  {self.fingerprint}")), id="trust-fingerprint")
            yield Static(
                Text(
                    f"Trust (t) writes this key to {clean(self.known_hosts)} and connects. "
                    "Refuse (r or Esc) leaves the host down."
                ),
                id="trust-note",
            )
            with Horizontal():
                yield Button("Refuse (r)", id="refuse", variant="primary")
                trust = Button("Trust (t)", id="trust", variant="warning")
                trust.can_focus = False  # Enter must never land on Trust
                yield trust

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._answer(event.button.id == "trust")

    def action_trust(self) -> None:
        self._answer(True)

    def action_refuse(self) -> None:
        self._answer(False)

    def _answer(self, trusted: bool) -> None:
        # Once: a second key press before the screen is gone would otherwise dismiss
        # whatever screen is on top by then (the next host's question among them).
        if self.answer is not None:
            return
        self.answer = trusted
        self.dismiss(trusted)
        if self.on_answer is not None:
            self.on_answer(trusted)

    def on_unmount(self) -> None:
        if self.answer is None:  # closed without an answer: refused, never trusted
            self.answer = False
            if self.on_answer is not None:
                self.on_answer(False)
