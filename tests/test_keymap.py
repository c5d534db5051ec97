"""keys.toml: what it remaps, and each line it cannot apply said at start with its line.

The README's own example, ``"procs.sort_cpu" = "c"``, gave the process table the key of
the app's Containers: on the host screen ``c`` no longer opened the containers. Such a
remap is reported and left out, so the other binding keeps its key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from textual.widget import Widget

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.replay import ReplayLink
from llmaos_tui.screens.audit import AuditScreen
from llmaos_tui.screens.containers import ContainersScreen
from llmaos_tui.screens.fleet import FleetScreen
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.keys import load_keys, places
from tests.helpers import RECORDING, wait_for

SIZE = (120, 40)


def keys_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_readme_example_is_reported_and_left_out(tmp_path: Path) -> None:
    keys = load_keys(LlmaosApp, keys_file(tmp_path, '"procs.sort_cpu" = "c"\n'))
    assert keys.keymap == {}
    (problem,) = keys.problems
    assert "line 1" in problem and "procs.sort_cpu" in problem
    assert "Containers (app.containers)" in problem and "the host screen" in problem


def test_each_bad_line_is_said_with_its_line(tmp_path: Path) -> None:
    path = keys_file(
        tmp_path,
        '# my keys\n"app.quitt" = "x"\n"app.audit" = 3\n"app.fleet" = "ctrl+qq"\n'
        '"fleet.heatmap" = "ctrl+h"\n"fleet.balance" = "ctrl+h"\n',
    )
    keys = load_keys(LlmaosApp, path)
    lines = [p.split(": ", 1)[0] for p in keys.problems]
    assert lines == [f"{path}, line {n}" for n in (2, 3, 4, 6)], keys.problems
    assert "did you mean 'app.quit'" in keys.problems[0]
    assert "must be a string" in keys.problems[1]
    assert "'ctrl+qq' is not a key" in keys.problems[2]
    assert "Heat map (fleet.heatmap)" in keys.problems[3] and "fleet screen" in keys.problems[3]
    assert keys.keymap == {"fleet.heatmap": "ctrl+h"}  # the first keeps it, the other is out


def test_good_remaps_pass_as_textual_names_them(tmp_path: Path) -> None:
    path = keys_file(
        tmp_path,
        # a swap on one screen, a character key, an unquoted dotted id (a TOML table)
        '"fleet.sort_cpu" = "M"\n"fleet.sort_mem" = "P"\n"app.audit" = "ctrl+a,@"\n'
        'procs.invert = "i"\n',
    )
    keys = load_keys(LlmaosApp, path)
    assert keys.problems == []
    assert keys.keymap == {
        "fleet.sort_cpu": "M",
        "fleet.sort_mem": "P",
        "app.audit": "ctrl+a,at",
        "procs.invert": "i",
    }


def test_not_toml_remaps_nothing_and_says_where(tmp_path: Path) -> None:
    keys = load_keys(LlmaosApp, keys_file(tmp_path, '"app.quit" = "x"\n"app.keys" = \n'))
    assert keys.keymap == {}
    (problem,) = keys.problems
    assert "not valid TOML" in problem and "line 2" in problem


def test_no_file_is_no_remap(tmp_path: Path) -> None:
    keys = load_keys(LlmaosApp, tmp_path / "keys.toml")
    assert (keys.keymap, keys.problems) == ({}, [])


async def test_the_console_shows_the_problems_and_the_other_key_still_works(
    tmp_path: Path,
) -> None:
    keys = load_keys(
        LlmaosApp, keys_file(tmp_path, '"procs.sort_cpu" = "c"\n"app.audit" = "ctrl+a"\n')
    )
    app = LlmaosApp([ReplayLink(RECORDING, name="rec")], cursor_blink=False, keymap=keys.keymap)
    app.config_errors += keys.problems  # as the CLI does
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, HostScreen), what="the host screen")
        shown = [n.message for n in app._notifications]
        assert any("procs.sort_cpu" in m and "line 1" in m for m in shown), shown
        await pilot.press("c")  # still Containers, from the host screen
        await wait_for(lambda: isinstance(app.screen, ContainersScreen), what="containers")
        await pilot.press("escape")
        await pilot.press("ctrl+a")  # the remap that is fine is applied
        await wait_for(lambda: isinstance(app.screen, AuditScreen), what="the audit log")


async def test_the_places_hold_every_widget_with_keys() -> None:
    """The check knows which widgets' keys are live on which screen: every widget with
    binding ids on the fleet and host screens is in its place's list."""
    known = {name: {c.__name__ for c in chain} for name, chain in places(LlmaosApp)}
    app = LlmaosApp(
        [ReplayLink(RECORDING, name="a"), ReplayLink(RECORDING, name="b")], cursor_blink=False
    )
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: isinstance(app.screen, FleetScreen), what="the fleet")
        seen = {"the fleet screen": _with_ids(app.screen.query(Widget))}
        await wait_for(lambda: len(app.fleet.up_hosts()) == 2, what="both hosts up")
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, HostScreen), what="a host")
        seen["the host screen"] = _with_ids(app.screen.query(Widget))
    for name, classes in seen.items():
        assert classes, name
        assert classes <= known[name], (name, classes - known[name])


def _with_ids(widgets: object) -> set[str]:
    return {
        type(w).__name__
        for w in widgets  # type: ignore[attr-defined]
        if any(b.id for b in getattr(type(w), "BINDINGS", []) if hasattr(b, "id"))
    }


def test_the_cli_prints_the_problems(tmp_path: Path) -> None:
    """Printed before the console opens, so they stay on the terminal after it."""
    cfg = tmp_path / "cfg" / "llmaos-tui"
    cfg.mkdir(parents=True)
    (cfg / "keys.toml").write_text('"procs.sort_cpu" = "c"\n')
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    code = (
        "import sys, llmaos_tui.cli as c, llmaos_tui.app as a\n"
        "a.LlmaosApp.run = lambda self, *x, **k: print('ran', self.config_errors)\n"
        "sys.exit(c.main(['--no-local', '--replay', sys.argv[1]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(RECORDING)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "line 1: 'procs.sort_cpu' = 'c'" in out.stderr and "not applied" in out.stderr
    assert out.stdout.startswith("ran [") and "procs.sort_cpu" in out.stdout
