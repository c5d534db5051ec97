"""A bare Python for the agent, as a fresh GPU server has it: no pip, no psutil, no msgspec.

The agent must come up on the standard library alone (issue 13). Tests that start the
agent as a process take its interpreter from :func:`agent_argv` and its environment from
:func:`agent_env`; the suite runs them once with the test venv's Python (psutil and
msgspec present) and once, through ``LLMAOS_TEST_AGENT_PYTHON=bare``, with a venv made
from the system's own ``python3`` by ``python3 -m venv --without-pip`` (nothing in it but
the standard library; the agent comes from ``agents/`` on ``PYTHONPATH``, as the pushed
zipapp carries it).

``bare_python()`` makes that venv once per test run. It needs a system Python 3.10+ that
lacks psutil and msgspec (Debian's and Ubuntu's python3 do); where there is none the
test skips, and fails under LLMAOS_REQUIRE_INTEGRATION=1.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import need

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ROOT / "agents"
ENV_VAR = "LLMAOS_TEST_AGENT_PYTHON"
"""``bare`` runs the agent under the bare venv; unset (or ``full``), under this Python."""

_SYSTEM_DIRS = "/usr/bin:/bin:/usr/local/bin"
_PROBE = (
    "import importlib.util, sys\n"
    "ok = sys.version_info >= (3, 10)\n"
    "has = [m for m in ('psutil', 'msgspec') if importlib.util.find_spec(m)]\n"
    "print('ok' if ok and not has else 'no: %s %s' % (sys.version.split()[0], has))\n"
)


@functools.cache
def _make_bare() -> Path | str:
    """The bare venv's python, or why there is none."""
    for name in ("python3", "python3.13", "python3.12", "python3.11", "python3.10"):
        system = shutil.which(name, path=_SYSTEM_DIRS)
        if system is None:
            continue
        probe = subprocess.run(
            [system, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
        )
        if probe.stdout.strip() != "ok":
            continue
        where = Path(tempfile.mkdtemp(prefix="llmaos-bare-", dir="/tmp"))
        # /tmp/llmaos-bare-*/ is world-readable so a second test user can run it too.
        where.chmod(0o755)
        made = subprocess.run(
            [system, "-m", "venv", "--without-pip", str(where / "venv")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if made.returncode != 0:
            return f"{system} -m venv --without-pip failed: {made.stderr.strip()[-300:]}"
        return where / "venv" / "bin" / "python"
    return f"no system python3 >= 3.10 without psutil and msgspec in {_SYSTEM_DIRS}"


def bare_python() -> Path:
    """A bare venv's python (made once per run); skips, or fails in CI, when none can be."""
    made = _make_bare()
    need(isinstance(made, Path), str(made))
    assert isinstance(made, Path)
    return made


def bare_mode() -> bool:
    """Whether this run starts the agent under the bare venv (``LLMAOS_TEST_AGENT_PYTHON``)."""
    return os.environ.get(ENV_VAR, "full") == "bare"


def agent_python() -> str:
    """The interpreter that tests start the agent with in this run."""
    return str(bare_python()) if bare_mode() else sys.executable


def agent_argv(*args: str) -> list[str]:
    """``python -m llmaos_agent ARGS`` under this run's agent interpreter."""
    return [agent_python(), "-m", "llmaos_agent", *args]


def agent_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this environment) with the agent package on PYTHONPATH, which the
    bare venv needs (it has no editable install); harmless for the full one."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(AGENTS), env.get("PYTHONPATH", "")) if p)
    return env


@functools.cache
def readable_agents() -> Path:
    """A copy of the agent package beside the bare venv, for PYTHONPATH of a second test
    user: the checkout may sit where only root can read (a fresh clone under a 0700
    ``mktemp -d``), the bare venv's folder is world-readable."""
    where = bare_python().parent.parent.parent / "agents"
    if not where.exists():
        shutil.copytree(AGENTS / "llmaos_agent", where / "llmaos_agent",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        for d in [where, *where.rglob("*")]:
            d.chmod(0o755 if d.is_dir() else 0o644)
    return where
