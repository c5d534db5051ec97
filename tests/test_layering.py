"""The layering of DESIGN.md, checked on every import statement of the source tree.

- the agent never imports the console, Textual or asyncssh;
- the controller (fleet/, balance/, ops/, cli.py) never imports Textual;
- screens and widgets never import asyncssh, docker, psutil or pynvml.

Imports are read with ``ast``, including those inside functions, so a lazy import
cannot slip past; a subprocess check also proves that starting the CLI's headless
parts loads no Textual at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agents" / "llmaos_agent"
CONSOLE = ROOT / "llmaos_tui"

CONTROLLER = ["fleet", "balance", "ops", "cli.py"]
UI = ["screens", "widgets"]


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
        p = base / part
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else [])
    return out


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


def test_the_agent_never_imports_the_console_textual_or_asyncssh() -> None:
    paths = files(AGENT)
    assert len(paths) > 10
    assert violations(paths, {"llmaos_tui", "textual", "asyncssh", "rich"}) == []


def test_the_controller_never_imports_textual() -> None:
    paths = files(CONSOLE, CONTROLLER)
    assert any(p.parent.name == "fleet" for p in paths)
    assert violations(paths, {"textual", "rich"}) == []


def test_screens_and_widgets_never_import_host_side_libraries() -> None:
    paths = files(CONSOLE, UI)
    assert len(paths) > 5
    assert violations(paths, {"asyncssh", "docker", "psutil", "pynvml"}) == []


@pytest.mark.parametrize(
    "module", ["llmaos_tui.cli", "llmaos_tui.fleet.watcher", "llmaos_tui.fleet.local"]
)
def test_headless_modules_load_without_textual(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"{module} loaded {out.stdout.strip()}"
