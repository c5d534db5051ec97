"""End to end: the installed ``llmaos-tui`` command in a real terminal (tmux).

What a newcomer does after ``pip install``: type ``llmaos-tui`` with no
configuration. The console must open on this machine, start its agent, draw one
bar per logical core, and quit on ``q`` with status 0, leaving no console behind.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import need

COLS, ROWS = 150, 45
BAR = re.compile(r"(?<![\w.])(\d+) [─█▏▎▍▌▋▊▉]+ +\d+%")


class Tmux:
    """A private tmux server (own socket, own config) driving one pane."""

    def __init__(self, tmp: Path) -> None:
        self.sock = str(tmp / "tmux.sock")
        self.conf = tmp / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\nset -g status off\n")

    def cmd(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            ["tmux", "-S", self.sock, "-f", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=check,
        )
        return out.stdout

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        # env -i: only what a login would give; the test runner's COLUMNS/LINES
        # would otherwise pin the console to 80x24 whatever the pane's size.
        sets = [f"{k}={v}" for k, v in env.items()]
        self.cmd(
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            str(COLS),
            "-y",
            str(ROWS),
            "env",
            "-i",
            *sets,
            *argv,
        )

    def screen(self) -> str:
        return self.cmd("capture-pane", "-p", "-t", "t")

    def pane(self, fmt: str) -> str:
        return self.cmd("display-message", "-p", "-t", "t", fmt).strip()

    def kill(self) -> None:
        self.cmd("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    need(shutil.which("tmux") is not None, "tmux is not installed")
    t = Tmux(tmp_path)
    try:
        yield t
    finally:
        t.kill()


def _wait(cond: object, timeout: float, what: str, screen: Tmux) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)  # poll interval
    raise AssertionError(f"no {what} after {timeout} s; the screen:\n{screen.screen()}")


def test_llmaos_tui_opens_on_this_machine_and_quits_on_q(
    tmux: Tmux, agent_home: Path, tmp_path: Path
) -> None:
    exe = Path(sys.executable).parent / "llmaos-tui"
    need(exe.exists(), f"the llmaos-tui command is not installed beside {sys.executable}")
    env = {
        "LLMAOS_AGENT_HOME": str(agent_home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no user config: the defaults
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
    }
    tmux.start([str(exe)], env)
    ncores = os.cpu_count() or 1

    def bars() -> set[int]:
        return {int(m.group(1)) for m in BAR.finditer(tmux.screen())}

    _wait(lambda: bars() == set(range(ncores)), 30, f"{ncores} core bars", tmux)
    # The console's own process (the pane's, as env execs it) shows up in its table.
    pid = tmux.pane("#{pane_pid}")
    # Its command line is cut at the column's width (a long venv path hides "llmaos-tui"),
    # so the row is found by its pid and its user, as the table shows them.
    user = pwd.getpwuid(os.getuid()).pw_name
    row = re.compile(rf"^ *{pid} +{re.escape(user[:12])} ", re.MULTILINE)
    _wait(lambda: row.search(tmux.screen()) is not None, 30, f"a row for pid {pid}", tmux)
    text = tmux.screen()
    assert f"{ncores} cores" in text
    assert "PID" in text and "COMMAND" in text
    assert "β cpu" in text
    assert bars() == set(range(ncores))

    tmux.cmd("send-keys", "-t", "t", "q")
    console = int(pid)

    def exited() -> bool:  # a zombie has exited: only tmux, its parent, can reap it
        try:
            return psutil.Process(console).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    # Generous under load: quitting closes the agent links (up to 5 s) on a busy machine.
    _wait(exited, 60, "exit after q", tmux)
    # tmux marks the pane dead a moment before it records how the process ended, and
    # tmux 3.3a at times misses the SIGCHLD (the pane shows "1::" and the console stays a
    # zombie until tmux gets another): nudge the server until it has reaped it.
    ended = "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}"
    server = int(tmux.pane("#{pid}"))

    def recorded() -> bool:
        state = tmux.pane(ended)
        if state.split(":")[0] == "1" and state != "1::":
            return True
        os.kill(server, signal.SIGCHLD)
        return False

    _wait(recorded, 15, "the exit status after q", tmux)
    assert tmux.pane(ended) == "1:0:", f"dead:status:signal is {tmux.pane(ended)}\n{tmux.screen()}"
