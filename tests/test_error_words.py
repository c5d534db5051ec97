"""Errors in words: the wire's validation messages and the errors of a call (docker's, msgspec's,
a timeout, a lost link) as a user reads them, no raw exception text."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from docker import errors as docker_errors
from textual.app import App
from textual.screen import Screen
from textual.widgets import Input, RichLog, Static

from llmaos_agent.protocol import (
    Container,
    ContainerLog,
    ContainerLogQuery,
    LogChunk,
    LogQuery,
    RequestRef,
    RequestSpec,
    RpcError,
)
from llmaos_tui.fleet.link import LinkDown
from llmaos_tui.fleet.session import CallError
from llmaos_tui.formats import error_words, wire_words
from llmaos_tui.screens.containers import ContainerLogScreen
from llmaos_tui.screens.requests import LogScreen, SubmitScreen
from tests.helpers import wait_for


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


# ------------------------------------------------- errors of a call, in words (error_words)


def raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the exception itself is what is tested
        return exc
    raise AssertionError("no exception")


def test_no_docker_engine_in_words() -> None:
    import docker

    exc = raised(
        lambda: docker.DockerClient(base_url="unix:///nonexistent/docker.sock").containers.get(
            "web"
        )
    )
    assert "Connection aborted" in str(exc)  # the SDK's text, which a user must not see
    assert error_words(exc, "gpu-a") == "the Docker engine on gpu-a did not answer"


def test_the_agents_engine_refusal_in_words() -> None:
    from llmaos_agent.container_control import EngineControl

    refused = raised(lambda: EngineControl("/nonexistent/docker.sock", timeout=1.0).logs("web", 5))
    exc = CallError(RpcError(code=-32001, message=str(refused)))  # as the agent answers it
    assert "/nonexistent/docker.sock" in str(exc)
    assert error_words(exc, "gpu-a") == "the Docker engine on gpu-a did not answer"


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (CallError(RpcError(code=-32002, message="no container web")), "no such container"),
        (
            docker_errors.NotFound(
                "404 Client Error for http+docker://localhost/v1.47/containers/web/json: Not Found",
                explanation="No such container: web",
            ),
            "no such container",
        ),
        (
            docker_errors.APIError("500 Server Error", explanation="port 8000 is already taken"),
            "port 8000 is already taken",
        ),
        (LinkDown("connection lost"), "gpu-a is not connected: connection lost"),
        (ConnectionRefusedError(111, "Connection refused"), "gpu-a: connection refused"),
        (OSError(28, "No space left on device"), "gpu-a: no space left on device"),
        (RuntimeError(""), "gpu-a: an unexpected error (RuntimeError)"),
    ],
)
def test_call_errors_in_words(exc: BaseException, words: str) -> None:
    assert error_words(exc, "gpu-a") == words


async def test_a_timeout_in_words() -> None:
    with pytest.raises(TimeoutError) as err:
        await asyncio.wait_for(asyncio.sleep(10), 0.01)
    assert str(err.value) == ""  # nothing to show of its own
    assert error_words(err.value, "gpu-a") == "gpu-a did not answer in time"


def test_an_answer_that_does_not_decode_in_words() -> None:
    exc = raised(lambda: msgspec.json.decode(b'{"id": 5}', type=RequestRef))
    assert "`" in str(exc)
    assert error_words(exc, "gpu-a") == (
        "gpu-a sent an answer the console cannot read (id: Expected str, got int)"
    )


class LogApp(App[None]):
    def __init__(self, screen: Screen[None]) -> None:
        super().__init__()
        self.first = screen

    def on_mount(self) -> None:
        self.push_screen(self.first)


def log_text(screen: Screen[None]) -> str:
    return "\n".join(line.text for line in screen.query_one(RichLog).lines)


async def test_log_screens_say_a_failed_fetch_in_words() -> None:
    import docker

    async def no_engine(_host: str, _q: ContainerLogQuery) -> ContainerLog:
        docker.DockerClient(base_url="unix:///nonexistent/docker.sock").containers.get("web")
        raise AssertionError("no engine there")

    async def gone(_host: str, _q: LogQuery) -> LogChunk:
        raise CallError(RpcError(code=-32002, message="no request `r-9`"))

    box = msgspec.convert(
        {"id": "c" * 64, "name": "web", "image": "nginx", "image_id": "sha256:x",
         "state": "running", "status": "Up", "created": 0.0},
        Container,
    )  # fmt: skip
    for screen, words in (
        (ContainerLogScreen("gpu-a", box, no_engine),
         "[log unavailable: the Docker engine on gpu-a did not answer]"),
        (LogScreen("gpu-a", "r-9", gone), "[log unavailable: no request r-9]"),
    ):  # fmt: skip
        app = LogApp(screen)
        async with app.run_test(size=(80, 24)):
            await wait_for(lambda s=screen: "unavailable" in log_text(s), 10, "the error shown")  # type: ignore[misc]
            assert log_text(screen) == words
