"""The process detail from the console: Enter's message (OpenProcDetail) against the real
local agent daemon, for a child this test starts, until it is killed."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmaos_agent.protocol import ProcDetail as ProcAnswer
from llmaos_tui import app as app_module
from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.state import HostStatus
from llmaos_tui.screens.intents import OpenProcDetail
from llmaos_tui.screens.proc_detail import ProcDetailScreen
from tests.helpers import wait_for
from tests.test_proc_detail import shown

SIZE = (140, 45)
DEADLINE = 60.0  # a busy 2-core machine: the agent's process pass may take seconds


@pytest.fixture
def child(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A sleeping Python with a spaced argument, in a folder of its own."""
    cwd = tmp_path / "work dir"
    cwd.mkdir()
    p = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "arg with spaces"], cwd=cwd
    )
    try:
        yield p
    finally:
        p.kill()
        p.wait()


async def test_enter_opens_the_childs_detail_and_a_killed_child_shows_exited(
    agent_home: Path, child: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    app = LlmaosApp([LocalLink()], cursor_blink=False)
    asked: list[float] = []
    ask = app._ask_detail

    async def counted(host: str, pid: int, create_time: float) -> ProcAnswer:
        asked.append(time.monotonic())
        return await ask(host, pid, create_time)

    app._ask_detail = counted  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["local"]
        # Up, not only sending: a call waits for the handshake (samples come before it).
        await wait_for(
            lambda: host.status is HostStatus.UP and child.pid in host.procs,
            DEADLINE,
            what="the child in the table",
        )
        app.post_message(OpenProcDetail("local", child.pid, host.procs[child.pid].create_time))
        await wait_for(
            lambda: isinstance(app.screen, ProcDetailScreen) and app.screen.is_mounted,
            DEADLINE,
            what="the detail screen",
        )
        screen = app.screen
        assert isinstance(screen, ProcDetailScreen)
        d = screen.detail
        assert list(d.cmdline or [])[-1] == "arg with spaces"
        assert d.cwd == str(tmp_path / "work dir")
        assert d.threads is not None and d.threads >= 1
        await wait_for(
            lambda: "'arg with spaces'" in shown(app) and "work dir" in shown(app),
            DEADLINE,
            what="the command line and cwd on screen",
        )
        # Its host's processes stay streamed under it; the graphs fill from the table.
        assert app.by_name["local"].procs_wanted
        await wait_for(lambda: len(screen.detail.cpu_history) >= 2, DEADLINE, what="history")
        await wait_for(lambda: len(asked) >= 3, DEADLINE, what="refreshes")
        # The first call is the open's (the refreshes count from its answer).
        gaps = [b - a for a, b in itertools.pairwise(asked[1:])]
        assert all(g >= app_module.DETAIL_EVERY_S - 0.01 for g in gaps), gaps

        child.kill()
        child.wait()
        await wait_for(lambda: bool(screen.detail.gone), DEADLINE, what="the exit noticed")
        assert f"pid {child.pid} is gone" in screen.detail.gone
        await wait_for(lambda: "exited" in shown(app), DEADLINE, what="exited on screen")
        calls = len(asked)
        await pilot.pause(app_module.DETAIL_EVERY_S * 1.5)
        assert len(asked) == calls  # a gone process is not asked after again


@pytest.fixture
def exited() -> subprocess.Popen[bytes]:
    """A child that has exited and been reaped: its pid is nobody's (or soon another's)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p


async def test_a_gone_pid_at_open_is_said_in_words(
    agent_home: Path, exited: subprocess.Popen[bytes]
) -> None:
    app = LlmaosApp([LocalLink()], cursor_blink=False)
    gone = exited
    async with app.run_test(size=SIZE) as pilot:
        host = app.fleet.hosts["local"]
        await wait_for(
            lambda: host.status is HostStatus.UP and bool(host.procs),
            DEADLINE,
            what="the process table",
        )
        app.post_message(OpenProcDetail("local", gone.pid, time.time()))
        await wait_for(
            lambda: any(f"pid {gone.pid}" in n.message for n in app._notifications),
            DEADLINE,
            what="the notice",
        )
        note = next(n.message for n in app._notifications if f"pid {gone.pid}" in n.message)
        assert "gone" in note or "another process" in note
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ProcDetailScreen)
