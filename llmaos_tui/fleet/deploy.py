"""The zero-install path: the agent as one zipapp, pushed over SFTP, run by the host's Python.

As Cockpit's beiboot does, nothing needs installing on a host but Python with
psutil and msgspec. The console builds a zipapp of the agent package it carries
(byte-for-byte reproducible, so its hash names it), uploads it once to the
user's cache directory on the host, and runs it there. A host always runs the
agent of the console's own version, so versions never disagree.

Remote command lines are built here for both kinds of remote shell: a POSIX
shell (quoted with ``shlex``) and Windows OpenSSH's default ``cmd.exe`` (no
``VAR=x cmd``; the ``py`` launcher first, ``python`` as the fallback). Nothing in
them comes from the network; the interpreter comes from the operator's own
inventory and is quoted all the same.
"""

from __future__ import annotations

import functools
import hashlib
import io
import secrets
import shlex
import subprocess
import zipfile
from pathlib import Path, PurePosixPath

import asyncssh

import llmaos_agent

AGENT_DIR = ".cache/llmaos-agent"
"""Where the zipapp goes, relative to the login directory (SFTP and the shell start there)."""

EXIT_MISSING_MODULE = 3
"""The zipapp's exit status when psutil or msgspec is missing on the host."""

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)

# Kept to syntax that Python 2 and old 3.x can parse, so an interpreter too old
# to run the agent says so instead of failing with a SyntaxError.
_MAIN = """\
import sys
if sys.version_info < (3, 10):
    sys.stderr.write("llmaos-agent: needs Python 3.10 or newer; this is %s (%s)\\n"
                     % (sys.version.split()[0], sys.executable))
    sys.exit(3)
import importlib.util
# find_spec, not import: the attach bridge that runs through here should not carry
# psutil and msgspec in memory for the life of the session.
_missing = [n for n in ("psutil", "msgspec") if importlib.util.find_spec(n) is None]
if _missing:
    sys.stderr.write("llmaos-agent: %s missing on this host; install with: "
                     "%s -m pip install --user %s\\n"
                     % (" and ".join(_missing), sys.executable, " ".join(_missing)))
    sys.exit(3)
from llmaos_agent.cli import main
sys.exit(main())
"""


@functools.cache
def zipapp() -> tuple[bytes, str]:
    """The agent zipapp and its name's hash: same sources, same bytes."""
    root = Path(llmaos_agent.__file__).resolve().parent
    buf = io.BytesIO()
    buf.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        _add(zf, "__main__.py", _MAIN.encode())
        for path in sorted(root.rglob("*.py")):
            rel = PurePosixPath("llmaos_agent", *path.relative_to(root).parts)
            _add(zf, str(rel), path.read_bytes())
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()[:16]


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


def remote_path(digest: str) -> str:
    """The zipapp's path on a host, relative to the login directory, '/'-separated."""
    return f"{AGENT_DIR}/llmaos-agent-{digest}.pyz"


def posix_command(path: str, python: str | None = None) -> str:
    """``python3 PATH attach`` for a POSIX login shell, every word quoted."""
    argv = [*(shlex.split(python) if python else ["python3"]), path, "attach"]
    return "exec " + shlex.join(argv)


def windows_command(path: str, python: str | None = None) -> str:
    """The same for ``cmd.exe``: the ``py`` launcher when there is one, else ``python``."""
    win_path = path.replace("/", "\\")
    if python:
        return subprocess.list2cmdline([*_split_windows(python), win_path, "attach"])
    py = subprocess.list2cmdline(["py", "-3", win_path, "attach"])
    plain = subprocess.list2cmdline(["python", win_path, "attach"])
    # Not "a && b || c": an agent that exits non-zero under py would start a second one.
    return f"where /q py & if errorlevel 1 ({plain}) else ({py})"


def _split_windows(python: str) -> list[str]:
    # "py -3" and "C:\Program Files\Python312\python.exe" both occur in inventories.
    if Path(python).suffix.lower() == ".exe" or ("\\" in python and " -" not in python):
        return [python]
    return python.split()


def attach_command(path: str, python: str | None, windows: bool) -> str:
    return windows_command(path, python) if windows else posix_command(path, python)


def explain_exit(code: int | None, stderr_tail: str, python: str | None, windows: bool) -> str:
    """What an agent that exited at once means, in words that say what to do."""
    interp = python or ("py -3 / python" if windows else "python3")
    if code in (127, 9009):  # POSIX shells and cmd.exe: command not found
        return (
            f"no Python at {interp!r} on this host: install Python 3.10+ there, "
            "or set python = '/path/to/python3' for it in hosts.toml"
        )
    if code == EXIT_MISSING_MODULE and stderr_tail:
        return stderr_tail.removeprefix("llmaos-agent: ")
    tail = f": {stderr_tail}" if stderr_tail else ""
    return f"the agent exited with code {code}{tail}"


async def ensure_agent(conn: asyncssh.SSHClientConnection) -> str:
    """Upload the zipapp unless the host has it; its path on the host.

    Written to a temporary name and renamed, so a dropped connection never
    leaves a truncated agent behind under the real name.
    """
    data, digest = zipapp()
    path = remote_path(digest)
    async with conn.start_sftp_client() as sftp:
        try:
            if (await sftp.stat(path)).size == len(data):
                return path
        except asyncssh.SFTPNoSuchFile:
            pass
        await sftp.makedirs(AGENT_DIR, exist_ok=True)
        tmp = f"{path}.{secrets.token_hex(4)}.part"
        async with sftp.open(tmp, "wb") as f:
            await f.write(data)
        try:
            await sftp.posix_rename(tmp, path)
        except asyncssh.SFTPOpUnsupported:
            await sftp.rename(tmp, path)
    return path
