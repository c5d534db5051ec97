"""The static checks CI holds the code to: ruff (lint and format), mypy --strict on the agent
and the console, the agent again as macOS and Windows see it, and the tests type-checked.

The agent runs on Linux, macOS and Windows hosts; this machine is Linux. ``mypy
--platform darwin`` and ``--platform win32`` are how code that calls a Linux-only
function (affinity on macOS, POSIX signals and Unix sockets on Windows) without a
``sys.platform`` guard is caught here, before a host meets it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed (it is in the test extra)")
        return found
    return str(path)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)


def _assert_clean(argv: list[str]) -> None:
    out = _run(argv)
    assert out.returncode == 0, f"{' '.join(argv)}:\n{out.stdout[-6000:]}{out.stderr[-2000:]}"


def test_ruff_lint_is_clean() -> None:
    _assert_clean([_tool("ruff"), "check", "."])


def test_ruff_format_is_clean() -> None:
    _assert_clean([_tool("ruff"), "format", "--check", "."])


def test_mypy_strict_on_the_agent_and_the_console() -> None:
    _assert_clean([_tool("mypy")])


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_mypy_on_the_agent_as_other_platforms_see_it(platform: str) -> None:
    _assert_clean([_tool("mypy"), "--platform", platform, "-p", "llmaos_agent"])


def test_mypy_on_the_tests() -> None:
    _assert_clean([_tool("mypy"), "tests"])
