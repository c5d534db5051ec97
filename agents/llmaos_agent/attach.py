"""``llmaos-agent attach``: the stdio bridge the console runs (over SSH, or locally).

Connects to the user's daemon, starting it detached when it is not running,
then copies bytes both ways until stdin closes (the console went away) or the
daemon closes the connection. It never parses the stream: a dumb pipe is the
cheapest one and cannot get the protocol wrong. Before it passes a byte on it checks who
serves the socket (SO_PEERCRED): a socket served by another user (one who planted it in a
directory they could write) is refused, so nothing the console sends reaches them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from llmaos_agent import endpoint
from llmaos_agent.paths import AgentPaths, open_file

EXIT_DAEMON_GONE = 3
EXIT_NO_DAEMON = 4


def self_command() -> list[str]:
    """How to run this agent again: as a module, or from the zipapp it was loaded from."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if parent.suffix == ".pyz" and parent.is_file():
            return [sys.executable, str(parent)]
    return [sys.executable, "-m", "llmaos_agent"]


def spawn_daemon(paths: AgentPaths, extra: list[str]) -> subprocess.Popen[bytes]:
    paths.ensure()
    logf = os.fdopen(open_file(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab")
    if sys.platform == "win32":
        flags = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
        new_session = False
    else:
        flags = 0
        new_session = True  # survives the SSH session that started it
    try:
        # stdout must not be our stdout: the console would never see EOF while it lives.
        return subprocess.Popen(
            [*self_command(), "daemon", *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=logf,
            close_fds=True,
            creationflags=flags,
            start_new_session=new_session,
        )
    finally:
        logf.close()


def connect_or_start(
    paths: AgentPaths, *, start: bool = True, timeout: float = 10.0, extra: list[str] | None = None
) -> socket.socket:
    try:
        return ours(endpoint.connect(paths))
    except OSError:
        if not start:
            raise
    proc = spawn_daemon(paths, extra or [])
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    # A cold daemon serves after about 0.1 s: polled every 5 ms at first (a refused
    # connect costs microseconds), so the console's first screen waits for the daemon,
    # not for the poll; slower after that, for a daemon slow to start.
    pause = 0.005
    while time.monotonic() < deadline:
        try:
            return ours(endpoint.connect(paths))
        except NotOurDaemon:
            raise
        except OSError as exc:
            last = exc
        code = proc.poll()
        if code not in (None, 0):
            # Lost a start race to another attach: its daemon is fine, keep trying.
            tail = _tail(paths.log)
            if "another llmaos-agent daemon" not in tail:
                raise ConnectionError(f"the daemon exited with code {code}: {tail}")
        time.sleep(pause)
        pause = min(0.05, pause * 1.25)
    raise ConnectionError(f"the daemon did not come up within {timeout:.0f} s: {last}")


class NotOurDaemon(ConnectionRefusedError):
    """The agent's socket is served by a process of another user."""


def ours(sock: socket.socket) -> socket.socket:
    """``sock`` when the process serving it runs as this user; else it is closed and
    :class:`NotOurDaemon` raised. Where the OS cannot tell (no SO_PEERCRED: macOS,
    Windows' token-guarded loopback port), the private directory is the guard."""
    if sys.platform == "win32":
        return sock
    if getattr(socket, "SO_PEERCRED", None) is None or sock.family != getattr(
        socket, "AF_UNIX", None
    ):
        return sock
    pid, uid = endpoint.peer_cred(sock)
    if uid != os.getuid():
        sock.close()
        who = "an unknown user" if uid is None else f"uid {uid} (pid {pid})"
        raise NotOurDaemon(
            f"the agent socket is served by {who}, not by this user (uid {os.getuid()}): "
            "refusing to talk to it"
        )
    return sock


def _tail(path: Path, n: int = 800) -> str:
    try:
        data = path.read_bytes()[-n:]
    except OSError:
        return ""
    return data.decode(errors="replace").strip()


def bridge(sock: socket.socket, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Copy stdin to the daemon and the daemon to stdout; returns the exit code.

    0 when stdin closes (the console went away); the process exits with
    :data:`EXIT_DAEMON_GONE` when the daemon closes the connection first.
    """
    ending = _Ending()

    def downstream() -> None:
        _copy_down(sock, stdout_fd)
        # The daemon is gone (or stdout is): nothing more to do. The main thread
        # is blocked reading stdin, so leave from here.
        ending.daemon_gone()

    threading.Thread(target=downstream, daemon=True).start()
    if not _copy_up(stdin_fd, sock):
        ending.daemon_gone()  # does not come back
    # Stdin closed: this end going away is no news. Mark it first, so the reader
    # woken by the shutdown does not report it as the daemon leaving.
    ending.leaving.set()
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    return 0


class _Ending:
    """Who ends the bridge: stdin closing (``leaving``) or the daemon going, reported once."""

    def __init__(self) -> None:
        self.leaving = threading.Event()  # set once stdin closed: the end of the socket is ours
        self._gone = threading.Lock()

    def daemon_gone(self) -> None:
        if self.leaving.is_set():
            return
        self._gone.acquire()  # the first thread here reports it; the other waits for the exit
        sys.stderr.write("llmaos-agent attach: the daemon closed the connection\n")
        sys.stderr.flush()
        os._exit(EXIT_DAEMON_GONE)


def _copy_down(sock: socket.socket, stdout_fd: int) -> None:
    """The daemon's bytes to stdout, until either end closes."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            view = memoryview(data)
            while view:
                view = view[os.write(stdout_fd, view) :]
    except OSError:
        return


def _copy_up(stdin_fd: int, sock: socket.socket) -> bool:
    """Stdin's bytes to the daemon: True when stdin closed, False when the daemon did."""
    while True:
        try:
            data = os.read(stdin_fd, 65536)
        except OSError:
            return True
        if not data:
            return True
        try:
            sock.sendall(data)
        except OSError:
            return False
