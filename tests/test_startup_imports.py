"""The console's start-up: what it loads before its first screen, and its early agent.

Start-up is measured in bench/startup.py (docs/BENCHMARKS.md, issue 12); these tests hold
the parts of it a later change could silently undo:

- a console of this machine alone never imports asyncssh (a fifth of a second) nor the
  docker SDK: not with its entry's imports, not running up to its first process table;
- its own command line is read without the subcommands' parsers, to the same result;
- the agent it starts before the event loop is the one its link opens, and one it never
  opened is ended;
- the host screen draws its first processes as they come, not when the coalescing timer
  fires.

Each import check runs in a fresh interpreter, whose ``sys.modules`` says what it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from llmaos_tui import app as app_module
from llmaos_tui import cli
from llmaos_tui.fleet.link import LinkDown
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.oneshot import connected
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.widgets.process_table import ProcessTable
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("asyncssh", "docker")

ENTRY = """
import json, sys
from llmaos_tui import app as app_module
from llmaos_tui import cli
args = cli.parse_args(sys.argv[1:])
links = cli.build_links(args, cli.scope_of(args))
# What run_app imports and builds before app.run().
from llmaos_tui.app import LlmaosApp
from llmaos_tui.screens.keys import load_keys
LlmaosApp(links, keymap=load_keys(LlmaosApp).keymap,
          settings_path=LlmaosApp.default_settings_path())
print(json.dumps(sorted(sys.modules)))
"""

RUN_TO_FIRST_TABLE = """
import asyncio, json, sys
from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.widgets.process_table import ProcessTable

async def main():
    app = LlmaosApp([LocalLink()], cursor_blink=False)
    async with app.run_test(size=(140, 45)) as pilot:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        journal = app.audit.path.parent / "moves.sqlite"
        def done():
            # Recovery has opened the journal and ended (its worker is gone).
            table = app.screen.query_one(ProcessTable)
            recovering = [w for w in app.workers if w.name == "recover-moves"]
            return table.row_count > 0 and journal.exists() and not recovering
        while not done():
            assert loop.time() < deadline, "no process table, or recovery unfinished"
            await pilot.pause(0.05)
    print(json.dumps(sorted(sys.modules)))

asyncio.run(main())
"""


def _modules(code: str, home: Path, *argv: str) -> set[str]:
    """The modules a fresh interpreter holds after ``code`` (HOME a private directory, so
    no hosts file, settings or journal of the user's is read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env["HOME"] = str(home)
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_a_local_console_imports_no_ssh_or_docker_before_it_runs(tmp_path: Path) -> None:
    assert _heavy(_modules(ENTRY, tmp_path)) == []


def test_a_console_with_an_ssh_host_does_import_asyncssh(tmp_path: Path) -> None:
    # The check above sees asyncssh where it is due: an SSH host in the fleet.
    assert "asyncssh" in _modules(ENTRY, tmp_path, "-H", "gpu1.example")


def test_a_local_console_running_to_its_process_table_loads_no_ssh_or_docker(
    tmp_path: Path, agent_home: Path
) -> None:
    # Also the move recovery it runs after the first frame (no unfinished moves here).
    assert _heavy(_modules(RUN_TO_FIRST_TABLE, tmp_path)) == []


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--theme", "llmaos-light", "--read-only"],
        ["--no-local", "-H", "a", "-H", "b[1-2]", "--replay", "x=f"],
        ["--hosts-file", "/h.toml", "--known-hosts", "/k", "--agent-wheels", "/w"],
        ["-Ha", "--no-l"],  # argparse's joined and abbreviated forms
        ["--theme=snapshot"],  # a value that is a command's name
    ],
)
def test_the_console_command_line_reads_as_the_full_parser_reads_it(argv: list[str]) -> None:
    full = cli.parser().parse_args(argv)
    for name in cli.APPENDED:
        setattr(full, name, [*getattr(full, name), *vars(full).pop(f"sub_{name}", [])])
    assert vars(cli.parse_args(argv)) == vars(full)
    assert full.cmd is None


def test_commands_help_and_mistakes_go_to_the_full_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.parse_args(["-H", "a", "snapshot", "--json"]).cmd == "snapshot"
    assert cli.parse_args(["plan", "--settle", "0"]).settle == 0.0
    with pytest.raises(SystemExit) as help_exit:
        cli.parse_args(["--help"])
    assert help_exit.value.code == 0
    assert "snapshot" in capsys.readouterr().out  # the full help, with the commands
    for wrong in (["--theme"], ["--bogus"], ["--h"], ["nonsense"]):
        with pytest.raises(SystemExit) as exc:
            cli.parse_args(wrong)
        assert exc.value.code == 2, wrong
        assert "usage: llmaos-tui" in capsys.readouterr().err


def _attach_children() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children()
        if "llmaos_agent" in " ".join(p.cmdline()) and "attach" in p.cmdline()
    ]


async def test_the_agent_started_before_the_loop_is_the_one_the_link_opens(
    agent_home: Path,
) -> None:
    link = LocalLink()
    link.start()
    (early,) = _attach_children()
    async with connected(link) as session:
        assert session.hello is not None and session.hello.host.cores == os.cpu_count()
        assert [p.pid for p in _attach_children()] == [early.pid]  # no second attach
    await wait_for(lambda: not early.is_running() or early.status() == "zombie", what="exit")
    async with connected(link):  # a reopen starts one of its own, as before
        pids = [p.pid for p in _attach_children() if p.status() != "zombie"]
        assert pids and early.pid not in pids


def test_an_agent_started_and_never_opened_is_ended(agent_home: Path) -> None:
    link = LocalLink()
    link.start()
    (early,) = _attach_children()
    link.discard_early()
    assert not early.is_running() or early.status() == "zombie"
    link.discard_early()  # nothing left to end: a no-op


async def test_an_early_start_that_cannot_run_says_why_when_opened(agent_home: Path) -> None:
    link = LocalLink("x", ["/nonexistent/llmaos-agent", "attach"])
    link.start()
    with pytest.raises(LinkDown, match="cannot run /nonexistent/llmaos-agent"):
        await link.open()


async def test_the_first_processes_are_drawn_without_waiting_for_the_coalescing_timer(
    agent_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The timer would draw them a minute late; the agent answers a second after the screen
    # is up, so the screen is drawn (empty) before its first processes come.
    monkeypatch.setattr(app_module, "COALESCE_S", 60.0)
    late = "import os, sys, time; time.sleep(1); os.execv(sys.argv[1], sys.argv[1:])"
    cmd = [sys.executable, "-c", late, sys.executable, "-m", "llmaos_agent", "attach"]
    app = app_module.LlmaosApp([LocalLink(command=cmd)], cursor_blink=False)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = app.screen
        assert isinstance(screen, HostScreen)
        table = screen.query_one(ProcessTable)
        assert table.row_count == 0
        host = app.fleet.hosts["local"]
        await wait_for(lambda: bool(host.procs), timeout=30, what="processes")
        for _ in range(100):  # well inside the minute the timer would take
            if table.row_count:
                break
            await pilot.pause(0.05)
        assert table.row_count > 0
