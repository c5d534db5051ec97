"""The zero-install path: the agent as one zipapp, pushed over SFTP, run by the host's Python.

As Cockpit's beiboot does, nothing needs installing on a host but Python 3.10+. The
console builds a zipapp of the agent package it carries (byte-for-byte reproducible, so
its hash names it), uploads it once to the user's cache directory on the host, removes the
zipapps it pushed before, and runs it there. A host always runs the agent of the
console's own protocol: an ``llmaos-agent`` installed on the host is preferred when it
speaks it (``llmaos-agent version``), else the zipapp is pushed.

On Linux the agent needs only the standard library. On macOS and Windows it needs psutil:
when the host's Python lacks it, a psutil wheel for that Python's tags
(:mod:`wheels`) is checked, unpacked file by file over SFTP into
``~/.cache/llmaos-agent/site-<tag>/`` (staged under a temporary name, every file's sha256
checked on the host by a stdlib one-liner, then renamed into place), and the zipapp's
``__main__`` puts that directory on sys.path. A host's ``wheels = "push"`` setting pushes
psutil even where the agent does not need it (Linux), which is how the path is tested
here.

Remote command lines are built here for both kinds of remote shell: a POSIX
shell (quoted with ``shlex``) and Windows OpenSSH's default ``cmd.exe`` (no
``VAR=x cmd``). Nothing in them comes from the network; the interpreter comes from our
candidate list or the operator's own inventory and is quoted all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import json
import re
import secrets
import shlex
import stat
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh

import llmaos_agent
from llmaos_agent.protocol import PROTOCOL_VERSION
from llmaos_tui.fleet import interpreter, wheels
from llmaos_tui.fleet.interpreter import SITE_TAG_EXPR, Python

AGENT_DIR = ".cache/llmaos-agent"
"""Where the zipapp goes, relative to the login directory (SFTP and the shell start there)."""

EXIT_MISSING_MODULE = 3
"""The zipapp's exit status when its Python is too old, or psutil is missing where the
agent needs it (macOS, Windows)."""

SITE_MANIFEST = "llmaos-site.json"
"""In a pushed wheel directory: the wheel it came from and every file's sha256."""

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_PUSHED = re.compile(r"llmaos-agent-[0-9a-f]{16}\.pyz\Z")
_PUSHED_PART = re.compile(r"llmaos-agent-[0-9a-f]{16}\.pyz\.[0-9a-f]{8}\.part\Z")
_STALE_PART_S = 3600.0  # a .part younger than this may be another console's upload
_INSTALLED = re.compile(r"llmaos-agent (\S{1,40}) protocol ([0-9]{1,6})\Z")

# Kept to syntax that Python 2 and old 3.x can parse, so an interpreter too old
# to run the agent says so instead of failing with a SyntaxError.
_MAIN = (
    """\
import sys
if sys.version_info < (3, 10):
    sys.stderr.write("llmaos-agent: needs Python 3.10 or newer; this is %s (%s)\\n"
                     % (sys.version.split()[0], sys.executable))
    sys.exit(3)
import os
# The wheels the console pushed for this very Python (psutil on macOS and Windows), in
# site-<tag> beside this zipapp; the daemon that attach starts runs through here too.
i = sys.implementation
_site = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "site-" + ("""
    + SITE_TAG_EXPR
    + """))
if os.path.isdir(_site):
    sys.path.insert(1, _site)
if not sys.platform.startswith("linux"):
    import importlib.util
    # find_spec, not import: the attach bridge that runs through here should not carry
    # psutil in memory for the life of the session.
    if importlib.util.find_spec("psutil") is None:
        sys.stderr.write("llmaos-agent: psutil missing on this host (%s, Python %s at %s), "
                         "and the console pushed no wheel for it\\n"
                         % (sys.platform, sys.version.split()[0], sys.executable))
        sys.exit(3)
from llmaos_agent.cli import main
sys.exit(main())
"""
)


class DeployError(RuntimeError):
    """The agent cannot be set up on a host; the message says why and what to do."""


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
        return interpreter.command_line(python, [win_path, "attach"], windows=True)
    py = subprocess.list2cmdline(["py", "-3", win_path, "attach"])
    plain = subprocess.list2cmdline(["python", win_path, "attach"])
    # Not "a && b || c": an agent that exits non-zero under py would start a second one.
    return f"where /q py & if errorlevel 1 ({plain}) else ({py})"


def attach_command(path: str, python: str | None, windows: bool) -> str:
    return windows_command(path, python) if windows else posix_command(path, python)


def explain_exit(code: int | None, stderr_tail: str, python: str | None, windows: bool) -> str:
    """What an agent that exited at once means, in words that say what to do."""
    interp = python or ("py -3 / python" if windows else "python3")
    if code in interpreter.NOT_FOUND:
        return (
            f"no Python at {interp!r} on this host: install Python 3.10+ there, "
            "or set python = '/path/to/python3' for it in hosts.toml"
        )
    if code == EXIT_MISSING_MODULE and stderr_tail:
        return stderr_tail.removeprefix("llmaos-agent: ")
    tail = f": {stderr_tail}" if stderr_tail else ""
    return f"the agent exited with code {code}{tail}"


# --- the zipapp on a host -----------------------------------------------------------------


async def ensure_agent(conn: asyncssh.SSHClientConnection) -> str:
    """Upload the zipapp unless the host has it; its path on the host.

    Written to a temporary name and renamed, so a dropped connection never
    leaves a truncated agent behind under the real name. Once it is in place, the
    zipapps pushed before (:func:`remove_old`) go.
    """
    data, digest = zipapp()
    path = remote_path(digest)
    async with conn.start_sftp_client() as sftp:
        try:
            if (await sftp.stat(path)).size == len(data):
                await remove_old(sftp, PurePosixPath(path).name)
                return path
        except asyncssh.SFTPNoSuchFile:
            pass
        await sftp.makedirs(AGENT_DIR, exist_ok=True)
        tmp = f"{path}.{secrets.token_hex(4)}.part"
        async with sftp.open(tmp, "wb") as f:
            await f.write(data)
        await _rename(sftp, tmp, path)
        await remove_old(sftp, PurePosixPath(path).name)
    return path


async def _rename(sftp: asyncssh.SFTPClient, old: str, new: str) -> None:
    try:
        await sftp.posix_rename(old, new)
    except asyncssh.SFTPOpUnsupported:
        await sftp.rename(old, new)


async def remove_old(sftp: asyncssh.SFTPClient, keep: str) -> list[str]:
    """Remove the zipapps pushed before ``keep`` (and uploads left half-done over an hour
    ago); the names removed. Only regular files named as this module names them: a
    symlink, a directory or any other name in the directory is left alone, and nothing a
    link points at is touched (lstat, never stat)."""
    removed = []
    for entry in await sftp.readdir(AGENT_DIR):
        name = _name(entry)
        pushed, part = _PUSHED.match(name), _PUSHED_PART.match(name)
        if name == keep or not (pushed or part):
            continue
        where = f"{AGENT_DIR}/{name}"
        try:
            attrs = await sftp.lstat(where)
            if attrs.type != asyncssh.FILEXFER_TYPE_REGULAR:
                continue
            if part and (attrs.mtime or 0) > _now() - _STALE_PART_S:
                continue
            await sftp.remove(where)
        except asyncssh.SFTPError:
            continue  # gone meanwhile, or not ours to remove: neither stops the agent
        removed.append(name)
    return removed


def _name(entry: asyncssh.SFTPName) -> str:
    f = entry.filename
    return f.decode(errors="replace") if isinstance(f, bytes) else f


def _now() -> float:
    import time  # noqa: PLC0415 (only here)

    return time.time()


async def installed_agent(conn: asyncssh.SSHClientConnection) -> str | None:
    """The host's own ``llmaos-agent`` version when it speaks this console's protocol."""
    code, out, _ = await interpreter.run_bounded(conn, "llmaos-agent version")
    m = _INSTALLED.match(out.strip()) if code == 0 else None
    if m is None or int(m.group(2)) != PROTOCOL_VERSION:
        return None
    return m.group(1)


# --- wheels on a host ---------------------------------------------------------------------


@dataclass
class WheelSource:
    """Where the console takes wheels from: a directory prepared offline (then only there,
    never the network), or its cache, filled by ``pip download`` on first need."""

    offline: Path | None = None
    cache: Path = field(default_factory=wheels.default_cache)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def wheel_for(self, target: wheels.Target) -> Path:
        if self.offline is not None:
            found = wheels.select(self.offline, target)
            if found is None:
                raise DeployError(
                    f"no {wheels.PROJECT} wheel for {target.key} in {self.offline}: fill it "
                    f"where there is network with `{target.agent_wheels_command()} "
                    f"--dir {self.offline}`"
                )
            return found
        # One download per target, however many hosts of that kind connect at once.
        async with self._locks.setdefault(target.key, asyncio.Lock()):
            found = wheels.select(self.cache, target)
            if found is not None:
                return found
            try:
                return await wheels.fetch(target, self.cache)
            except wheels.WheelError as exc:
                raise DeployError(
                    f"{exc}; without network, run `{target.agent_wheels_command()}` where "
                    f"there is, and copy its directory to {self.cache}"
                ) from None


VERIFY = (
    "import sys,os,json,hashlib;r=sys.argv[1];j=os.path.join;"
    "print(json.dumps({os.path.relpath(j(d,f),r).replace(os.sep,'/'):"
    "('link' if os.path.islink(j(d,f)) else hashlib.sha256(open(j(d,f),'rb').read()).hexdigest())"
    " for d,_,fs in os.walk(r) for f in fs}))"
)
"""Run by the host's Python on a staged wheel directory: every file's sha256 (a symlink
as ``link``), so the console checks what arrived before it goes into place. Written
under the same rules as :data:`interpreter.PROBE` (one line, nothing cmd.exe acts on)."""


def site_path(python: Python) -> str:
    return f"{AGENT_DIR}/site-{python.site_tag}"


async def ensure_site(
    conn: asyncssh.SSHClientConnection, python: Python, wheel: Path, windows: bool
) -> str:
    """The wheel unpacked into the host's ``site-<tag>`` for ``python``; its path.

    A directory already there from the same wheel is kept. Otherwise the wheel is checked
    (:func:`wheels.check_wheel`), its files written to a staging directory with a
    manifest, every file's sha256 read back by the host's own Python and compared, and
    only then renamed into place (an older one moved aside and removed after).
    """
    if not python.site_tag:
        raise DeployError(f"{python.command} {python.version_text} names no wheel directory")
    digest, members = await asyncio.to_thread(_load, wheel)
    manifest: dict[str, Any] = {
        "wheel": wheel.name,
        "sha256": digest,
        "files": {m.path: m.sha256 for m in members},
    }
    site = site_path(python)
    async with conn.start_sftp_client() as sftp:
        if await _read_manifest(sftp, site) == manifest:
            return site
        stage = f"{site}.{secrets.token_hex(4)}.part"
        try:
            await _write_tree(sftp, stage, members, json.dumps(manifest, indent=1).encode())
            await _verify(conn, python, stage, manifest, windows)
            await _swap(sftp, stage, site)
        except BaseException:
            await _remove_tree(sftp, stage)
            raise
    return site


def _load(wheel: Path) -> tuple[str, list[wheels.Member]]:
    return hashlib.sha256(wheel.read_bytes()).hexdigest(), wheels.check_wheel(wheel)


async def _read_manifest(sftp: asyncssh.SFTPClient, site: str) -> object:
    try:
        attrs = await sftp.lstat(f"{site}/{SITE_MANIFEST}")
        if attrs.type != asyncssh.FILEXFER_TYPE_REGULAR or (attrs.size or 0) > 1 << 20:
            return None
        async with sftp.open(f"{site}/{SITE_MANIFEST}", "rb") as f:
            return json.loads(await f.read())
    except (asyncssh.SFTPError, ValueError):
        return None


async def _write_tree(
    sftp: asyncssh.SFTPClient, root: str, members: list[wheels.Member], manifest: bytes
) -> None:
    await sftp.makedirs(root)
    parents = sorted({str(PurePosixPath(m.path).parent) for m in members} - {"."})
    for d in parents:
        await sftp.makedirs(f"{root}/{d}", exist_ok=True)
    for m in members:
        async with sftp.open(f"{root}/{m.path}", "wb") as f:
            await f.write(m.data)
    async with sftp.open(f"{root}/{SITE_MANIFEST}", "wb") as f:
        await f.write(manifest)


async def _verify(
    conn: asyncssh.SSHClientConnection,
    python: Python,
    stage: str,
    manifest: dict[str, Any],
    windows: bool,
) -> None:
    where = stage.replace("/", "\\") if windows else stage
    line = interpreter.command_line(python.command, ["-c", VERIFY, where], windows)
    code, out, err = await interpreter.run_bounded(conn, line)
    try:
        seen = json.loads(out) if code == 0 else None
    except ValueError:
        seen = None
    files = manifest["files"]
    want = {
        **files,
        SITE_MANIFEST: hashlib.sha256(json.dumps(manifest, indent=1).encode()).hexdigest(),
    }
    if seen != want:
        what = "its answer was not a file list" if not isinstance(seen, dict) else _diff(want, seen)
        tail = err.strip()[-200:]
        raise DeployError(
            f"the wheel's files on the host are not what was sent ({what})"
            + (f": {tail}" if tail and not isinstance(seen, dict) else "")
        )


def _diff(want: dict[str, object], seen: dict[str, object]) -> str:
    wrong = sorted(k for k in want if seen.get(k) != want[k])
    extra = sorted(k for k in seen if k not in want)
    parts = [f"{len(wrong)} differ, e.g. {wrong[0]!a}"] if wrong else []
    parts += [f"{len(extra)} not sent, e.g. {extra[0]!a}"] if extra else []
    return "; ".join(parts) or "different"


async def _swap(sftp: asyncssh.SFTPClient, stage: str, site: str) -> None:
    try:
        await sftp.lstat(site)
    except asyncssh.SFTPNoSuchFile:
        await _rename(sftp, stage, site)
        return
    old = f"{site}.{secrets.token_hex(4)}.old"
    await _rename(sftp, site, old)
    await _rename(sftp, stage, site)
    await _remove_tree(sftp, old)


async def _remove_tree(sftp: asyncssh.SFTPClient, root: str) -> None:
    """Remove a directory this module made, entries by lstat: a link is removed itself,
    never followed; errors leave the rest (a later push starts from a new name)."""
    try:
        entries = await sftp.readdir(root)
    except asyncssh.SFTPError:
        return
    for entry in entries:
        if _name(entry) in (".", ".."):
            continue
        path = f"{root}/{_name(entry)}"
        try:
            if stat.S_ISDIR((await sftp.lstat(path)).permissions or 0):
                await _remove_tree(sftp, path)
            else:
                await sftp.remove(path)
        except asyncssh.SFTPError:
            continue
    with contextlib.suppress(asyncssh.SFTPError):
        await sftp.rmdir(root)


# --- putting it together ------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How a host runs its agent: the command, and what was found on the way."""

    command: str
    python: Python | None = None  # None: the host's installed llmaos-agent
    installed: str | None = None  # its version, when that is what runs
    site: str | None = None  # the wheel directory pushed, if any


async def prepare(
    conn: asyncssh.SSHClientConnection,
    *,
    python: str | None,
    windows: bool,
    agent: str = "auto",
    wheel_mode: str = "auto",
    source: WheelSource | None = None,
) -> Plan:
    """Make the agent runnable on the host behind ``conn``; how to run it.

    ``agent``: ``auto`` runs the host's own llmaos-agent when it speaks this protocol and
    pushes the zipapp otherwise; ``push`` always pushes; ``installed`` only runs the
    host's. ``wheel_mode``: ``auto`` pushes psutil where the agent needs it and the host
    lacks it (macOS, Windows); ``push`` pushes it to every host (Linux too: the agent then
    finds psutil in its wheel directory); ``never`` pushes none.
    """
    if agent != "push":
        version = await installed_agent(conn)
        if version is not None:
            return Plan("llmaos-agent attach", installed=version)
        if agent == "installed":
            raise DeployError(
                f"no llmaos-agent speaking protocol {PROTOCOL_VERSION} on this host's PATH"
            )
    try:
        found = await interpreter.find(conn, python, windows)
    except interpreter.NoPython as exc:
        raise DeployError(str(exc)) from None
    path = await ensure_agent(conn)
    site = None
    if wheel_mode == "push" or (wheel_mode == "auto" and found.needs_psutil()):
        try:
            target = found.target()
            wheel = await (source or WheelSource()).wheel_for(target)
            site = await ensure_site(conn, found, wheel, windows)
        except wheels.WheelError as exc:
            raise DeployError(f"cannot push {wheels.PROJECT} to this host: {exc}") from None
    return Plan(attach_command(path, found.command, windows), python=found, site=site)
