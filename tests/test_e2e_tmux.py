"""End to end: the installed ``llmaos-tui`` command in a real terminal (tmux).

What a newcomer does after ``pip install``: type ``llmaos-tui`` with no
configuration. The console must open on this machine, start its agent, draw one
bar per logical core, and quit on ``q`` with status 0, leaving no console behind.

And at 80x24, the smallest terminal it is made for, typed at a shell prompt: every
core, the memory line, process rows with their command and the footer's main keys are
on the screen; help opens and closes, ``f`` shows the fleet, F10 quits, and the shell
gets its terminal back (normal screen, no mouse reporting, cursor shown, line editing).
"""

from __future__ import annotations

import contextlib
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

from llmaos_tui.formats import human_bytes
from tests.conftest import need

COLS, ROWS = 150, 45
BAR = re.compile(r"(?<![\w.])(\d+) [─█▏▎▍▌▋▊▉]+ +\d+%")
CORE = re.compile(r"(?<![\w.])(\d+) ?[─█▏▎▍▌▋▊▉]")
"""A core in the full, compact or tiny form (index, then its bar)."""
DENSE = re.compile(r"^ *(\d+)-(\d+) +[▁▂▃▄▅▆▇█]+", re.MULTILINE)
"""A row of the dense form (many cores in few rows): its index range, one cell a core."""
MAIN_KEYS = ["? Help", "q Quit", "f9 Kill…", "r Requests", "/ Filter"]


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

    def start(
        self, argv: list[str], env: dict[str, str], size: tuple[int, int] = (COLS, ROWS)
    ) -> None:
        # env -i: only what a login would give; the test runner's COLUMNS/LINES
        # would otherwise pin the console to 80x24 whatever the pane's size.
        sets = [f"{k}={v}" for k, v in env.items()]
        self.cmd(
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            str(size[0]),
            "-y",
            str(size[1]),
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


def _console() -> Path:
    exe = Path(sys.executable).parent / "llmaos-tui"
    need(exe.exists(), f"the llmaos-tui command is not installed beside {sys.executable}")
    return exe


def _env(agent_home: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "LLMAOS_AGENT_HOME": str(agent_home),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no user config: the defaults
        "TERM": "xterm-256color",
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
    }


def test_llmaos_tui_opens_on_this_machine_and_quits_on_q(
    tmux: Tmux, agent_home: Path, tmp_path: Path
) -> None:
    exe = _console()
    tmux.start([str(exe)], _env(agent_home, tmp_path))
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


def cores_drawn(screen: str) -> list[int]:
    """The core indices drawn above the process table, in any form, each as often as
    drawn (a core drawn twice or a stray index shows as a difference)."""
    top = screen.split("COMMAND", maxsplit=1)[0]
    found = [int(m.group(1)) for m in CORE.finditer(top)]
    for m in DENSE.finditer(top):
        found.extend(range(int(m.group(1)), int(m.group(2)) + 1))
    return sorted(found)


def test_at_80x24_from_a_shell_prompt(tmux: Tmux, agent_home: Path, tmp_path: Path) -> None:
    exe = _console()
    shell = shutil.which("sh")
    need(shell is not None, "no sh to type the command at")
    env = _env(agent_home, tmp_path) | {"PS1": "$ "}
    tmux.start([str(shell)], env, size=(80, 24))
    _wait(lambda: tmux.screen().startswith("$"), 15, "a shell prompt", tmux)
    tmux.cmd("send-keys", "-t", "t", "-l", str(exe))
    tmux.cmd("send-keys", "-t", "t", "Enter")
    ncores = os.cpu_count() or 1

    _wait(lambda: cores_drawn(tmux.screen()) == list(range(ncores)), 30, f"{ncores} cores", tmux)
    shell_pid = int(tmux.pane("#{pane_pid}"))

    def console_pid() -> int | None:
        for p in psutil.Process(shell_pid).children():
            with contextlib.suppress(psutil.Error):
                if any(a.endswith("llmaos-tui") for a in p.cmdline()):
                    return p.pid
        return None

    _wait(lambda: console_pid() is not None, 15, "the console's process", tmux)
    pid = console_pid()
    assert pid is not None
    command = " ".join(psutil.Process(pid).cmdline())
    # Its row: pid, user, and at 80 columns still the start of its command line.
    user = pwd.getpwuid(os.getuid()).pw_name
    row = re.compile(rf"^ *{pid} +{re.escape(user[:12])} .* {re.escape(command[:16])}", re.M)
    _wait(lambda: row.search(tmux.screen()) is not None, 30, f"a row for pid {pid}", tmux)

    text = tmux.screen()
    lines = text.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert f"{ncores} cores" in lines[0]
    mem = [line for line in lines if line.lstrip().startswith("Mem ")]
    total = human_bytes(psutil.virtual_memory().total)
    assert len(mem) == 1 and f"/{total}" in mem[0], (total, text)
    header = [line for line in lines if "PID" in line and "COMMAND" in line]
    assert len(header) == 1, text
    assert re.search(r"^ *\d+ +\S+ +\d", lines[lines.index(header[0]) + 1]), text
    footer = lines[-1]
    for key in MAIN_KEYS:
        assert key in footer, (key, footer)

    def press(name: str) -> None:
        tmux.cmd("send-keys", "-t", "t", name)

    press("?")
    _wait(lambda: "Esc closes" in tmux.screen(), 15, "the help after ?", tmux)
    assert "app.quit" in tmux.screen()  # the keys listed with their ids
    press("Escape")
    _wait(lambda: "Esc closes" not in tmux.screen(), 15, "the help closed by Esc", tmux)
    assert "COMMAND" in tmux.screen() and "f9 Kill…" in tmux.screen().splitlines()[-1]
    press("F1")
    _wait(lambda: "Esc closes" in tmux.screen(), 15, "the help after F1", tmux)
    press("Escape")
    _wait(lambda: "Esc closes" not in tmux.screen(), 15, "the help closed again", tmux)

    fleet_row = re.compile(r"^ *local +up +", re.MULTILINE)
    press("f")
    _wait(lambda: fleet_row.search(tmux.screen()) is not None, 15, "the fleet after f", tmux)
    text = tmux.screen()
    assert "HOST" in text and "STATUS" in text and "1 up" in text
    assert "f9 Kill…" not in text.splitlines()[-1]  # the fleet's footer, not the host's

    press("F10")

    def gone() -> bool:  # sh waits for its child: once reaped, the pid is gone
        return not psutil.pid_exists(pid)

    # Generous under load: quitting closes the agent links (up to 5 s) on a busy machine.
    _wait(gone, 60, "the console gone after F10", tmux)
    _wait(lambda: tmux.screen().rstrip().endswith("$"), 15, "the prompt back", tmux)
    modes = "#{alternate_on}:#{mouse_any_flag}:#{mouse_sgr_flag}:#{cursor_flag}"
    assert tmux.pane(modes) == "0:0:0:1", f"alt:mouse:sgr:cursor {tmux.pane(modes)}"
    assert "COMMAND" not in tmux.screen()  # the console's frames went with its screen
    # The terminal is the shell's again, line editing and all: a typed command runs.
    tmux.cmd("send-keys", "-t", "t", "-l", "echo status=$?")
    tmux.cmd("send-keys", "-t", "t", "Enter")
    _wait(lambda: "\nstatus=0" in tmux.screen(), 15, "the shell running a command", tmux)
