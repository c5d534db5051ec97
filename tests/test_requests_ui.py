"""Pilot tests of the requests screen and of htop's process keys, against a real daemon.

The console runs with a local link to a real ``llmaos-agent daemon`` in a private
home; keys are pressed as an operator would, and the effect is read back from the
agent (the request's priority and state) and from the OS (nice, affinity, state).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from llmaos_agent.protocol import RequestInfo, RequestRef, RequestSpec
from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.oneshot import connected
from llmaos_tui.fleet.session import AgentSession
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.screens.dialogs import ChoiceScreen, ConfirmScreen, PromptScreen
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.requests import RequestsScreen, SubmitScreen
from llmaos_tui.widgets.synced_table import SyncedTable
from tests.helpers import wait_for
from tests.test_requests import CORES

SIZE = (130, 40)


@pytest.fixture
async def side(daemon: subprocess.Popen[bytes]) -> AsyncIterator[AgentSession]:
    """A second client, as another console would be, to set up and to read back."""
    async with connected(LocalLink("side")) as s:
        yield s


async def req(s: AgentSession, rid: str) -> RequestInfo:
    info: RequestInfo = await s.call("requests.get", RequestRef(id=rid))
    return info


async def eventually(cond: object, what: str, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)  # poll interval


def _app(tmp_path: Path, read_only: bool = False) -> LlmaosApp:
    return LlmaosApp(
        [LocalLink()], read_only=read_only, cursor_blink=False,
        audit=AuditLog(tmp_path / "audit.jsonl"),
    )  # fmt: skip


async def test_requests_screen_keys_change_the_queue(side: AgentSession, tmp_path: Path) -> None:
    blocker: RequestInfo = await side.call(
        "requests.submit", RequestSpec(argv=["sleep", "60"], cpus=CORES, priority=1000)
    )
    waiting: RequestInfo = await side.call(
        "requests.submit", RequestSpec(argv=["true"], cpus=CORES, name="waiting")
    )
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["local"]
        await wait_for(lambda: waiting.id in host.requests, 20, "the queue shown")
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RequestsScreen)
        # The running blocker is first; the waiting one is the second row.
        await wait_for(
            lambda: [r.id for _, r in screen._rows[:2]] == [blocker.id, waiting.id],
            10, "the blocker first, then the waiting request",
        )  # fmt: skip
        table = screen.query_one(SyncedTable)
        await wait_for(lambda: table.row_count >= 2 and table.has_focus, 10, "the table drawn")
        await pilot.press("down")
        await wait_for(
            lambda: (sel := screen.selected()) is not None and sel[1].id == waiting.id,
            10, "the cursor on the waiting request",
        )  # fmt: skip

        await pilot.press("plus")
        await eventually(lambda: _prio(side, waiting.id, 10), "priority 10")
        await pilot.press("minus", "minus")
        await eventually(lambda: _prio(side, waiting.id, -10), "priority -10")
        await pilot.press("h")
        await eventually(lambda: _state(side, waiting.id, "held"), "held")
        await wait_for(lambda: host.requests[waiting.id].state == "held", 10, "held shown live")
        # The key acts on the row as drawn: wait for the screen to draw it held (under load
        # the redraw may come a moment after the state), as an operator would look first.
        await wait_for(
            lambda: (sel := screen.selected()) is not None and sel[1].state == "held",
            10, "the row drawn held",
        )  # fmt: skip
        await pilot.press("h")
        await eventually(lambda: _state(side, waiting.id, "queued"), "released")
        await pilot.press("c")
        await wait_for(lambda: isinstance(app.screen, ConfirmScreen), 5, "the confirmation")
        await pilot.press("enter")  # a stray Enter refuses
        await pilot.pause(0.3)
        assert (await req(side, waiting.id)).state == "queued"
        await pilot.press("c", "y")
        await eventually(lambda: _state(side, waiting.id, "cancelled"), "cancelled")

        # A new request from the form.
        await pilot.press("n")
        await wait_for(lambda: isinstance(app.screen, SubmitScreen), 5, "the form")
        await pilot.press(*"echo from-the-form")
        await pilot.press("enter")
        await wait_for(
            lambda: any(r.argv == ["echo", "from-the-form"] for r in host.requests.values()),
            15, "the submitted request",
        )  # fmt: skip
    await side.call("requests.cancel", RequestRef(id=blocker.id))
    actions = [e["action"] for e in AuditLog(tmp_path / "audit.jsonl").read()]
    assert actions == [
        "requests.prio", "requests.prio", "requests.prio", "requests.hold",
        "requests.release", "requests.cancel", "requests.submit",
    ]  # fmt: skip


async def _prio(s: AgentSession, rid: str, p: int) -> bool:
    return (await req(s, rid)).priority == p


async def _state(s: AgentSession, rid: str, state: str) -> bool:
    return (await req(s, rid)).state == state


async def test_read_only_console_hides_and_refuses(side: AgentSession, tmp_path: Path) -> None:
    blocker: RequestInfo = await side.call(
        "requests.submit", RequestSpec(argv=["sleep", "60"], cpus=CORES, priority=1000)
    )
    waiting: RequestInfo = await side.call(
        "requests.submit", RequestSpec(argv=["true"], cpus=CORES)
    )
    app = _app(tmp_path, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["local"]
        await wait_for(lambda: waiting.id in host.requests, 20, "the queue shown")
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RequestsScreen)
        shown = {b.binding.id for b in screen.active_bindings.values() if b.enabled}
        assert "requests.log" in shown
        assert not shown & {"requests.raise", "requests.cancel", "requests.hold"}
        await pilot.press("down", "plus", "c", "h")
        await pilot.pause(0.5)
        assert (await req(side, waiting.id)).priority == 0
        assert (await req(side, waiting.id)).state == "queued"
    await side.call("requests.cancel", RequestRef(id=blocker.id))


async def test_htop_keys_renice_pin_and_signal(
    daemon: subprocess.Popen[bytes], sleeper: psutil.Process, tmp_path: Path
) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["local"]
        await wait_for(lambda: sleeper.pid in host.procs, 20, "the sleeper in the table")
        assert isinstance(app.screen, HostScreen)
        await pilot.press("slash", *str(sleeper.pid), "enter")
        await pilot.pause(0.2)
        table = app.screen.query_one("#procs")
        assert table.selected is not None and table.selected.pid == sleeper.pid  # type: ignore[attr-defined]

        await pilot.press("f8")
        await wait_for(lambda: sleeper.nice() == 1, 10, "nice 1 after F8")
        await pilot.press("n")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("ctrl+a", "ctrl+k", "9", "9", "enter")  # out of range: stays open
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("backspace", "backspace", "5", "enter")
        await wait_for(lambda: sleeper.nice() == 5, 10, "nice 5 from the prompt")
        if CORES >= 2:
            await pilot.press("a")
            await pilot.press("ctrl+a", "ctrl+k", "1", "enter")
            await wait_for(lambda: sleeper.cpu_affinity() == [1], 10, "pinned to core 1")
        await pilot.press("k")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press(*["down"] * 5, "enter")  # TERM KILL INT HUP QUIT [STOP]
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_for(lambda: sleeper.status() == psutil.STATUS_STOPPED, 10, "stopped")
    audit = AuditLog(tmp_path / "audit.jsonl").read()
    assert [e["action"] for e in audit][:2] == ["proc.renice", "proc.renice"]
    assert audit[0]["before"] == "nice 0" and audit[0]["after"] == "nice 1"
    assert audit[-1]["action"] == "proc.signal" and audit[-1]["after"] == "sent SIGSTOP"
