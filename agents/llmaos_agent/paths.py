"""Where the agent keeps its endpoint, lock, logs and state, per user.

``LLMAOS_AGENT_HOME`` puts everything under one directory (tests, several
agents side by side). Otherwise the runtime directory is ``$XDG_RUNTIME_DIR``
when the OS provides it, else a cache directory; state goes to the XDG state
directory (``%LOCALAPPDATA%`` on Windows).
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

SAFE_ID = r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z"
"""What an id that may become part of a file path matches (request ids, journal entries):
a bounded run of letters, digits, ``_``, ``-`` and ``.``, never starting with ``.`` or ``-``
(so never ``.`` or ``..``), never holding ``/``, ``\\`` or NUL. The protocol checks it where
a message is decoded, on both sides; :func:`inside` checks it again before a path is built."""

_SAFE_ID = re.compile(SAFE_ID)


class UnsafeDirectory(RuntimeError):
    """A directory we would keep a private endpoint in is open to others."""


class UnsafePath(ValueError):
    """An id that would make a path outside its directory (or no proper name at all)."""


def inside(base: Path, name: str) -> Path:
    """``base / name`` for an id that came from outside, once it is known to name one entry
    directly inside ``base``: :class:`UnsafePath` for ``..``, ``/``, NUL and the like."""
    if not isinstance(name, str) or _SAFE_ID.fullmatch(name) is None:
        raise UnsafePath(f"{name!r} is not a valid id (letters, digits, _ . -; at most 64)")
    path = base / name
    if os.path.dirname(os.path.normpath(path)) != os.path.normpath(base):
        raise UnsafePath(f"{name!r} would leave {base}")
    return path


@dataclass(frozen=True)
class AgentPaths:
    runtime: Path
    state: Path

    @property
    def socket(self) -> Path:
        return self.runtime / "agent.sock"

    @property
    def endpoint_file(self) -> Path:
        """Port and token of the loopback endpoint (Windows, or LLMAOS_AGENT_ENDPOINT=tcp)."""
        return self.runtime / "endpoint.json"

    @property
    def lock(self) -> Path:
        return self.runtime / "daemon.lock"

    @property
    def log(self) -> Path:
        return self.state / "daemon.log"

    def ensure(self) -> None:
        for d in (self.runtime, self.state):
            private_dir(d)


def default_paths() -> AgentPaths:
    home = os.environ.get("LLMAOS_AGENT_HOME")
    if home:
        base = Path(home)
        return AgentPaths(runtime=base / "run", state=base / "state")
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return AgentPaths(runtime=base / "llmaos-agent" / "run", state=base / "llmaos-agent")
    # Home directories are often shared between hosts (NFS on a cluster): a socket
    # or lock there must be per host, or one host's attach would find another's.
    host = _host_dir_name()
    xdg_run = os.environ.get("XDG_RUNTIME_DIR")
    runtime = (
        Path(xdg_run) / "llmaos-agent"
        if xdg_run and Path(xdg_run).is_dir()
        else Path.home() / ".cache" / "llmaos-agent" / "run" / host
    )
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return AgentPaths(runtime=runtime, state=Path(state_home) / "llmaos-agent" / host)


def _host_dir_name() -> str:
    name = platform.node() or "localhost"
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in name)
    return safe.strip(".") or "localhost"


def private_dir(path: Path) -> Path:
    """Make or open ``path`` as a directory only this user may write, safely on a shared
    host: no component is followed through a symbolic link that another user could have
    planted, and no component may belong to another user (root is trusted) or be writable
    by others, unless sticky (as /tmp is: then what lies in it must be ours or root's).
    The directory itself must be ours and not writable by others. Missing components are
    made with mode 0700; nothing that exists is ever chmodded (it may not be ours to
    change). :class:`UnsafeDirectory` says which component is wrong and why."""
    if sys.platform == "win32":
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
    _walk(os.path.abspath(path), links=0)
    return path


_MAX_LINKS = 20


def _walk(target: str, links: int) -> None:
    if sys.platform == "win32":  # POSIX only: Windows has no uid nor O_NOFOLLOW
        raise NotImplementedError("_walk is POSIX only")
    uid = os.getuid()
    parts = [p for p in target.split(os.sep) if p]
    fd = os.open(os.sep, os.O_RDONLY | os.O_DIRECTORY)
    here = os.sep
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            parent = here
            here = os.path.join(here, name)
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):  # another of our starts made it
                    os.mkdir(name, 0o700, dir_fd=fd)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                # A link is as trustworthy as whoever could have made it: its owner (it
                # sits in a directory already checked to be writable by us, root or,
                # when sticky, only its entries' owners).
                if st.st_uid not in (0, uid):
                    raise UnsafeDirectory(
                        f"{here} is a symbolic link made by uid {st.st_uid}, not by us or "
                        "root; refusing to follow it"
                    )
                if links >= _MAX_LINKS:
                    raise UnsafeDirectory(f"{here}: too many levels of symbolic links")
                dest = os.path.join(parent, os.readlink(name, dir_fd=fd))
                rest = os.path.join(os.path.normpath(dest), *parts[i + 1 :])
                _walk(rest, links + 1)
                return
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeDirectory(f"{here} is not a directory")
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
            st = os.fstat(fd)  # what we hold now, not what the name pointed to a moment ago
            _check_dir(here, st, uid, mine=last)
    finally:
        os.close(fd)


def _check_dir(where: str, st: os.stat_result, uid: int, *, mine: bool) -> None:
    if mine and st.st_uid != uid:
        raise UnsafeDirectory(f"{where} belongs to uid {st.st_uid}, not to us (uid {uid})")
    if st.st_uid not in (0, uid):
        raise UnsafeDirectory(
            f"{where} belongs to uid {st.st_uid}: that user could replace what lies below it"
        )
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and (mine or not st.st_mode & stat.S_ISVTX):
        raise UnsafeDirectory(
            f"{where} is writable by others (mode {oct(st.st_mode & 0o7777)}): another "
            "user could replace what lies in it"
        )


class UnsafeFile(RuntimeError):
    """A file the agent keeps (queue, audit log, spec, pid, log) is a link, not ours, or open
    to others."""


def open_file(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` for the agent's own files: never through a symlink (``O_NOFOLLOW``), and
    only a regular file of this user that nobody else may write; :class:`UnsafeFile`
    otherwise (the file is left as it was)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | nofollow | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as exc:
        if nofollow and exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symbolic link; refusing to follow it") from None
        raise
    if sys.platform != "win32":
        st = os.fstat(fd)
        why = ""
        if not stat.S_ISREG(st.st_mode):
            why = "is not a regular file"
        elif st.st_uid != os.getuid():
            why = f"belongs to uid {st.st_uid}, not to us (uid {os.getuid()})"
        elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            why = f"is writable by others (mode {oct(st.st_mode & 0o777)})"
        if why:
            os.close(fd)
            raise UnsafeFile(f"{path} {why}; refusing it")
    return fd


def try_lock(fd: int) -> bool:
    """An exclusive lock on the open file ``fd`` without waiting; False when another
    process holds it. Held until ``fd`` is closed (or its process ends)."""
    try:
        if sys.platform == "win32":
            import msvcrt  # noqa: PLC0415 - Windows only

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl  # noqa: PLC0415 - not on Windows

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
