"""Where the agent keeps its endpoint, lock, logs and state, per user.

``LLMAOS_AGENT_HOME`` puts everything under one directory (tests, several
agents side by side). Otherwise the runtime directory is ``$XDG_RUNTIME_DIR``
when the OS provides it, else a cache directory; state goes to the XDG state
directory (``%LOCALAPPDATA%`` on Windows).
"""

from __future__ import annotations

import errno
import os
import platform
import stat
import sys
from dataclasses import dataclass
from pathlib import Path


class UnsafeDirectory(RuntimeError):
    """A directory we would keep a private endpoint in is open to others."""


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
    """Create ``path`` readable by its owner only, and refuse one that others can write."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32":
        st = path.stat()
        if st.st_uid != os.getuid():
            raise UnsafeDirectory(f"{path} belongs to uid {st.st_uid}, not to us")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafeDirectory(f"{path} is writable by others (mode {oct(st.st_mode)})")
        if st.st_mode & 0o077:
            path.chmod(0o700)
    return path


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
