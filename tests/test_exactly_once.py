"""A request is never run twice and never lost, whatever instant the daemon or a
supervisor dies: each named step of dispatch is a fault point (llmaos_agent.faults), and
each test kills the real process there with SIGKILL, restarts what a host would restart,
and checks what an operator would: how many times the request's program ran (it writes
a line per run), the state the queue shows, and that nothing is left running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from llmaos_agent import faults
from llmaos_agent.protocol import RequestInfo
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.oneshot import connected
from tests.test_daemon import TIMEOUT, end, start_daemon
from tests.test_requests import FAST, _kill_leftovers, get, submit, until


def _program(runs: Path) -> list[str]:
    """A request that writes down each time it runs, then lives a moment (so a kill of its
    supervisor finds it running)."""
    code = f"import os, time; open({str(runs)!r}, 'a').write(f'{{os.getpid()}}\\n'); time.sleep(1)"
    return [sys.executable, "-c", code]


def _supervisors(home: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if (p.info["environ"] or {}).get("LLMAOS_AGENT_HOME") == str(home) and any(
                "supervisor" in a for a in p.info["cmdline"] or []
            ):
                found.append(p)
    return found


def _wait_supervisors_gone(home: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _supervisors(home):
        assert time.monotonic() < deadline, "a supervisor of the test is still running"
        time.sleep(0.1)  # poll interval


def _runs(runs: Path) -> list[str]:
    return runs.read_text().splitlines() if runs.exists() else []


@pytest.fixture
def home(agent_home: Path) -> Iterator[Path]:
    try:
        yield agent_home
    finally:
        _kill_leftovers(agent_home)


@pytest.mark.parametrize("step", faults.DISPATCH_STEPS)
async def test_daemon_killed_at_each_dispatch_step_runs_the_request_once(
    step: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    monkeypatch.setenv(faults.ENV, step)
    proc = start_daemon(*FAST, "--aging", "3600")
    try:
        with contextlib.suppress(Exception):  # the daemon dies under the session
            async with connected(LocalLink()) as s:
                info = await submit(s, *_program(runs), name="once")
        proc.wait(TIMEOUT)
        assert proc.returncode == -signal.SIGKILL, f"the daemon did not die at {step}"
        end(proc)
        monkeypatch.delenv(faults.ENV)
        proc = start_daemon(*FAST, "--aging", "3600")
        async with connected(LocalLink()) as s:
            done: RequestInfo = await until(s, info.id, "done", timeout=60)
        assert done.exit_code == 0
        _wait_supervisors_gone(home)
        assert len(_runs(runs)) == 1, f"killed at {step}: ran {len(_runs(runs))} times"
    finally:
        end(proc)


@pytest.mark.parametrize(
    ("step", "state", "times"),
    [
        # Before its claim: nothing ran, so the daemon queues it again and it runs once.
        ("supervisor.locked", "done", 1),
        # Claimed, pid not yet written: it may have started, so it must not run again;
        # the queue says so rather than guessing.
        ("supervisor.claimed", "failed", 0),
        # Running, then the supervisor dies: the request runs on and is watched.
        ("supervisor.pid", "failed", 1),
    ],
)
async def test_supervisor_killed_at_each_step(
    step: str, state: str, times: int, home: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    runs = tmp_path / "runs"
    monkeypatch.setenv(faults.ENV, step)
    monkeypatch.setenv(faults.ONCE_ENV, str(tmp_path / "fired"))
    proc = start_daemon(*FAST, "--aging", "3600")
    try:
        async with connected(LocalLink()) as s:
            info = await submit(s, *_program(runs), name="once")
            end_ = await until(s, info.id, state, timeout=60)
            assert (tmp_path / "fired").exists(), "the fault never fired"
            _wait_supervisors_gone(home)
            assert len(_runs(runs)) == times, f"{step}: ran {len(_runs(runs))} times"
            assert end_.reason, "the queue says why"
            if step == "supervisor.claimed":
                assert "not run again" in end_.reason
            # It stays settled: no later pass starts it again. A quiet window (five of the
            # daemon's 0.2 s passes), the only way to see that nothing happens.
            time.sleep(1.0)
            assert (await get(s, info.id)).state == state
            assert len(_runs(runs)) == times
    finally:
        end(proc)


async def test_a_late_supervisor_of_a_voided_attempt_runs_nothing(
    home: Path, tmp_path: Path
) -> None:
    """A supervisor started for an attempt the daemon has since voided (its daemon died
    before it got going) finds no spec for its attempt and runs nothing."""
    runs = tmp_path / "runs"
    proc = start_daemon(*FAST, "--aging", "3600")
    try:
        async with connected(LocalLink()) as s:
            info = await until(s, (await submit(s, *_program(runs))).id, "done", timeout=60)
        d = home / "state" / "requests" / info.id
        late = subprocess.run(
            [sys.executable, "-m", "llmaos_agent.requests.supervisor", str(d), "1"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        assert late.returncode != 0
        assert "claimed before" in late.stderr or "no spec" in late.stderr
        assert len(_runs(runs)) == 1
    finally:
        end(proc)
