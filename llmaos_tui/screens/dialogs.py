"""Small modal dialogs: a value prompt, a pick from a list, a yes/no confirmation.

Their titles and questions name what a host reported (a process, a request, a
container), so each is drawn through :func:`llmaos_tui.widgets.text.safe`: escapes for
control characters, never markup.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static

from llmaos_agent.safetext import clean
from llmaos_tui.widgets.text import safe


class PromptScreen(ModalScreen[str | None]):
    """Ask for one value; ``check`` returns an error message or "" for a good value."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical {
        width: 64; height: auto; border: round $primary; background: $surface; padding: 0 1;
    }
    PromptScreen #error { color: $error; height: auto; }
    PromptScreen #hint { color: $text-muted; height: auto; }
    """

    def __init__(
        self, title: str, value: str = "", hint: str = "",
        check: Callable[[str], str] = lambda _v: "",
    ) -> None:  # fmt: skip
        super().__init__()
        self.title_text, self.value, self.hint, self.check = title, value, hint, check

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(safe(self.title_text))
            # An Input draws its value as it is; the value offered may be a host's (a
            # process's affinity): cleaned, so a hostile one shows and then fails the check.
            yield Input(value=clean(self.value), id="value")
            yield Static(safe(self.hint), id="hint")
            yield Static("", id="error")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = getattr(self.app, "cursor_blink", True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        err = self.check(event.value)
        if err:
            self.query_one("#error", Static).update(safe(err))
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str | None]):
    """Pick one of ``options`` (Enter), or Esc."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]
    DEFAULT_CSS = """
    ChoiceScreen { align: center middle; }
    ChoiceScreen > Vertical {
        width: 48; height: auto; max-height: 80%; border: round $primary;
        background: $surface; padding: 0 1;
    }
    ChoiceScreen OptionList { height: auto; max-height: 20; }
    """

    def __init__(self, title: str, options: list[str]) -> None:
        super().__init__()
        self.title_text, self.options = title, options

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(safe(self.title_text))
            yield OptionList(*(safe(o) for o in self.options), id="choices")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.options[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """``y`` confirms; ``n``, Esc or Enter refuse (a stray Enter must not kill anything)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape,enter", "answer(False)", "No", id="confirm.no"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 64; height: auto; border: round $warning; background: $surface; padding: 0 1;
    }
    ConfirmScreen #keys { color: $text-muted; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(safe(self.question), id="question")
            yield Static("y: yes   n / Esc: no", id="keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
