"""The layering of DESIGN.md, checked three ways.

- the agent never imports the console, Textual or asyncssh;
- the controller (fleet/, balance/, ops/, every cli module) never imports Textual or Rich;
- screens and widgets never import asyncssh, docker, psutil or pynvml.

1. Every import statement of the source tree, read with ``ast``, including those inside
   functions, so a lazy import cannot slip past.
2. The import-linter contracts in pyproject.toml (``lint-imports``), which follow every
   chain of imports: a screen that imports a console module that imports the agent's
   collector that imports psutil breaks them, though no line of the screen names psutil.
3. At run time: every module is imported in a fresh interpreter and ``sys.modules`` says
   what that loaded, so a rule holds for what a process really carries, whatever the
   import statements look like (and the test process's own imports mask nothing).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("collected_first")  # ast.parse below

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 CI leg
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agents" / "llmaos_agent"
CONSOLE = ROOT / "llmaos_tui"

CONTROLLER = ["fleet", "balance", "ops", "cli.py", "cli_*.py", "formats.py", "exporter.py", "slurm"]
UI = ["screens", "widgets"]

AGENT_BANNED = {"llmaos_tui", "textual", "rich", "asyncssh"}
CONTROLLER_BANNED = {"textual", "rich"}
UI_BANNED = {"asyncssh", "docker", "psutil", "pynvml"}
AGENT_LAZY = {"docker", "pynvml"}
"""Used by the agent only when present and asked for: importing a module loads neither,
so a daemon starts without the megabytes of either."""

KNOWN_RUNTIME_BREAKS: dict[str, str] = {}
"""Modules that break a run-time rule today: expected failures (strict, so a fix shows)."""


def imports_of(path: Path) -> set[str]:
    """Every top-level module name that ``path`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value.split(".")[0])
    return found


def _is_dynamic_import(node: ast.Call) -> bool:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return name in ("import_module", "__import__") and bool(node.args)


def files(base: Path, parts: list[str] | None = None) -> list[Path]:
    if parts is None:
        return sorted(base.rglob("*.py"))
    out: list[Path] = []
    for part in parts:
        for p in sorted(base.glob(part)):
            out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def module_name(path: Path) -> str:
    """The dotted name ``path`` is imported as (the agent's tree sits under agents/)."""
    rel = path.relative_to(ROOT / "agents" if path.is_relative_to(AGENT) else ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(base: Path, parts: list[str] | None = None) -> list[str]:
    # __main__ runs the program when imported: what it imports, its package shows.
    return [module_name(p) for p in files(base, parts) if p.name != "__main__.py"]


def violations(paths: list[Path], banned: set[str]) -> list[str]:
    return [
        f"{p.relative_to(ROOT)} imports {name}"
        for p in paths
        for name in sorted(imports_of(p) & banned)
    ]


def test_the_checker_sees_lazy_and_dynamic_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import os\n"
        "def f():\n    import textual.app\n"
        "def g():\n    from asyncssh import connect\n"
        "import importlib\nimportlib.import_module('docker.errors')\n"
        "from . import sibling\n"
    )
    assert imports_of(src) == {"os", "textual", "asyncssh", "importlib", "docker"}


# ------------------------------------------------------------ import statements


def test_the_agent_never_imports_the_console_textual_or_asyncssh() -> None:
    paths = files(AGENT)
    assert len(paths) > 10
    assert violations(paths, AGENT_BANNED) == []


def test_the_controller_never_imports_textual() -> None:
    paths = files(CONSOLE, CONTROLLER)
    assert any(p.parent.name == "fleet" for p in paths)
    assert {"cli.py", "cli_plan.py", "cli_requests.py"} <= {p.name for p in paths}
    assert violations(paths, CONTROLLER_BANNED) == []


def test_screens_and_widgets_never_import_host_side_libraries() -> None:
    paths = files(CONSOLE, UI)
    assert len(paths) > 5
    assert violations(paths, UI_BANNED) == []


# --------------------------------------------------------------- import-linter


def _contracts() -> list[dict[str, Any]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = data["tool"]["importlinter"]["contracts"]
    return contracts


def _forbidding(source: str) -> set[str]:
    """What the forbidden contracts keep ``source`` from importing."""
    return {
        m
        for c in _contracts()
        if c["type"] == "forbidden" and source in c["source_modules"]
        for m in c["forbidden_modules"]
    }


def test_the_contracts_state_the_rules_of_this_file() -> None:
    """The contracts cannot be weakened without this file noticing."""
    assert _forbidding("llmaos_agent") >= AGENT_BANNED
    for source in modules(CONSOLE, CONTROLLER):
        top = ".".join(source.split(".")[:2])
        assert _forbidding(top) >= CONTROLLER_BANNED, f"no contract covers {top}"
    for part in UI:
        assert _forbidding(f"llmaos_tui.{part}") >= UI_BANNED
    assert any(c["type"] == "acyclic_siblings" for c in _contracts())


def _lint_imports() -> str:
    found = Path(sys.executable).with_name("lint-imports")
    exe = str(found) if found.exists() else shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' (import-linter)")
    return exe


def test_the_import_linter_contracts_are_kept() -> None:
    # --no-cache: no cache directory in the work tree, and no stale answer from one.
    out = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BROKEN" not in out.stdout


# ------------------------------------------------------------------- run time

# Imports each module named on stdin in a child forked from this bare interpreter (fresh:
# nothing but the standard library loaded), and prints what top-level packages of interest
# each loaded. Where there is no fork, a fresh interpreter per module.
_PROBE = r"""
import json, os, subprocess, sys
names, watch = json.loads(sys.stdin.read())
watch = set(watch)
one = "import importlib, json, sys; importlib.import_module(sys.argv[1]); " \
      "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[2:]))))"
out = {}
for name in names:
    if not hasattr(os, "fork"):
        r = subprocess.run([sys.executable, "-c", one, name, *watch], capture_output=True,
                           text=True)
        out[name] = json.loads(r.stdout) if r.returncode == 0 else "error: " + r.stderr[-2000:]
        continue
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            import importlib
            importlib.import_module(name)
            res = sorted({m.split(".")[0] for m in sys.modules} & watch)
        except BaseException as exc:
            res = f"error: {type(exc).__name__}: {exc}"
        os.write(wfd, json.dumps(res).encode())
        os._exit(0)
    os.close(wfd)
    data = b""
    while chunk := os.read(rfd, 65536):
        data += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    out[name] = json.loads(data) if data else "error: the child died"
print(json.dumps(out))
"""

_loaded_cache: dict[str, list[str] | str] = {}


def loaded(names: list[str]) -> dict[str, list[str] | str]:
    """What importing each module loads, of the packages the rules name."""
    todo = [n for n in names if n not in _loaded_cache]
    if todo:
        watch = sorted(AGENT_BANNED | CONTROLLER_BANNED | UI_BANNED | AGENT_LAZY)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "agents")])}
        out = subprocess.run(
            [sys.executable, "-c", _PROBE],
            input=json.dumps([todo, watch]),
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            env=env,
            cwd=ROOT,
        )
        _loaded_cache.update(json.loads(out.stdout))
    return {n: _loaded_cache[n] for n in names}


def _runtime_params(names: list[str]) -> list[object]:
    return [
        pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_RUNTIME_BREAKS[n], strict=True))
        if n in KNOWN_RUNTIME_BREAKS
        else n
        for n in names
    ]


def _check(name: str, group: list[str], banned: set[str]) -> None:
    got = loaded(group)[name]
    assert not isinstance(got, str), f"importing {name} failed: {got}"
    assert set(got) & banned == set(), f"importing {name} loads {sorted(set(got) & banned)}"


AGENT_MODULES = modules(AGENT)
CONTROLLER_MODULES = modules(CONSOLE, CONTROLLER)
UI_MODULES = modules(CONSOLE, UI)


def test_the_run_time_checks_cover_every_part() -> None:
    assert len(AGENT_MODULES) > 20 and "llmaos_agent.daemon" in AGENT_MODULES
    assert {"llmaos_tui.cli", "llmaos_tui.fleet.state", "llmaos_tui.balance.planner"} <= set(
        CONTROLLER_MODULES
    )
    assert {"llmaos_tui.screens.host", "llmaos_tui.widgets.process_table"} <= set(UI_MODULES)


def test_the_run_time_probe_sees_what_an_import_loads() -> None:
    """The probe itself: a module that loads psutil shows it, one that does not, not."""
    # No agent module loads psutil on Linux any more (it reads /proc); the tests' conftest does.
    got = loaded(["tests.conftest", "llmaos_agent.procdelta"])
    assert "psutil" in got["tests.conftest"]
    assert got["llmaos_agent.procdelta"] == []


@pytest.mark.parametrize("module", _runtime_params(AGENT_MODULES))
def test_importing_an_agent_module_loads_no_console_and_no_optional_sdk(module: str) -> None:
    _check(module, AGENT_MODULES, AGENT_BANNED | AGENT_LAZY)


@pytest.mark.parametrize("module", _runtime_params(CONTROLLER_MODULES))
def test_importing_a_controller_module_loads_no_textual_or_rich(module: str) -> None:
    _check(module, CONTROLLER_MODULES, CONTROLLER_BANNED)


@pytest.mark.parametrize("module", _runtime_params(UI_MODULES))
def test_importing_a_screen_or_widget_loads_no_host_side_library(module: str) -> None:
    _check(module, UI_MODULES, UI_BANNED)


def test_the_cli_for_this_machine_loads_no_asyncssh() -> None:
    # asyncssh and its crypto are a fifth of a second of the console's start-up; a console
    # of this machine alone has no SSH host and must not pay for it (issue 12's start-up).
    got = loaded(["llmaos_tui.cli"])["llmaos_tui.cli"]
    assert not isinstance(got, str), f"importing llmaos_tui.cli failed: {got}"
    assert "asyncssh" not in got
