"""Errors in words: the wire's validation messages as a user reads them, no msgspec text."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from textual.app import App
from textual.widgets import Input, Static

from llmaos_agent.protocol import RequestSpec
from llmaos_tui.formats import wire_words
from llmaos_tui.screens.requests import SubmitScreen


def refusal(**fields: Any) -> str:
    """What msgspec says of a request with these fields, checked as the agent checks it."""
    spec = RequestSpec(**{"argv": ["true"], **fields})
    with pytest.raises(msgspec.ValidationError) as err:
        msgspec.json.decode(msgspec.json.encode(spec), type=RequestSpec)
    return str(err.value)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"priority": 5000}, "priority: at most 1000"),
        ({"cpus": -1}, "cores: at least 0"),
        ({"gpus": 999}, "GPUs: at most 64"),
        ({"name": "x" * 1000}, "name: at most 256 characters"),
        ({"argv": []}, "the command: at least 1 item"),
        ({"mem": -1}, "memory: at least 0B"),
    ],
)
def test_wire_bounds_in_words(fields: dict[str, Any], words: str) -> None:
    raw = refusal(**fields)
    assert "`" in raw  # msgspec's own text, which a user must not be shown
    assert wire_words(raw) == words


def test_another_message_loses_its_markup() -> None:
    assert wire_words("Object missing required field `argv` - at `$`") == (
        "Object missing required field argv"
    )
    assert wire_words("Expected `str`, got `int` - at `$.name`") == "name: Expected str, got int"


class FormApp(App[None]):
    def on_mount(self) -> None:
        self.push_screen(SubmitScreen("gpu1"))


async def test_the_new_request_form_says_the_bound_in_words() -> None:
    app = FormApp()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, SubmitScreen)
        screen.query_one("#command", Input).value = "sleep 1"
        screen.query_one("#priority", Input).value = "5000"
        screen.query_one("#command", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        shown = str(screen.query_one("#error", Static).render())
        assert shown == "priority: at most 1000", shown
        assert app.screen is screen  # nothing sent, the form stays
