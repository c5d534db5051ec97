"""A daemon's client connections: each one's unread-output bounds, who is on the other end
(SO_PEERCRED), and its byte stream cut into lines.

The bounds (:data:`PAUSE_BYTES`, :data:`MAX_CLIENT_BUFFER`, :data:`MAX_TOTAL_BUFFER`,
:data:`STALL_S`, :data:`MAX_CLIENTS`) keep one client from stalling the others or the
sampling; :mod:`llmaos_agent.daemon` applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import sys
from collections.abc import AsyncIterator
from typing import Protocol

log = logging.getLogger("llmaos_agent.daemon")

MAX_CLIENT_BUFFER = 4 << 20
"""A client that lets this much pile up unread is dropped, so memory stays bounded."""

MAX_TOTAL_BUFFER = 32 << 20
"""All clients' unread output together: over it, the client holding the most is dropped
(40 clients at the per-client bound would otherwise hold 160 MB)."""

PAUSE_BYTES = 64 << 10
"""A client with this much unread is not read from until it drains (its pipelined calls
wait in the kernel, not here); history and answers are held back the same way."""

STALL_S = 15.0
"""A client that stays over :data:`PAUSE_BYTES` this long without draining is dropped."""

MAX_CLIENTS = 64
"""Connections served at once; one more gets an error line saying so and is closed."""


class Server(Protocol):
    """What a client needs of the daemon that serves it."""

    clients: set[Client]
    conns: set[Client]

    def make_room(self, extra: int, sender: Client) -> bool: ...


class Client:
    __slots__ = ("claimed", "daemon", "needs_full", "over_since", "peer_pid", "procs", "tasks",
                 "uid", "user", "writer")  # fmt: skip

    def __init__(self, writer: asyncio.StreamWriter, daemon: Server) -> None:
        self.writer = writer
        self.daemon = daemon
        self.needs_full = True  # its next process pass sends the whole table
        # It gets the process table with its samples (``procs.watch``); a console turns it
        # off for a host whose processes nobody looks at.
        self.procs = True
        self.claimed = ""  # the operator name the console's handshake gives: not checked
        self.peer_pid, self.uid = peer_cred(writer)
        # Without SO_PEERCRED (the loopback TCP endpoint) the peer proved it holds the token
        # in a file only the daemon's user can read: it is that user.
        self.user = user_name(self.uid if self.uid is not None else getuid())
        self.over_since: float | None = None  # since when its unread output is over PAUSE
        self.tasks: set[asyncio.Task[None]] = set()  # its container calls in flight
        # Pause reading (drain() waits) at PAUSE_BYTES rather than asyncio's 64 KiB.
        with contextlib.suppress(AttributeError, NotImplementedError, ValueError):
            writer.transport.set_write_buffer_limits(high=PAUSE_BYTES)

    @property
    def gone(self) -> bool:
        return self.writer.is_closing()

    def backlog(self) -> int:
        """Bytes written to it that it has not read yet (beyond the kernel's buffer)."""
        try:
            return int(self.writer.transport.get_write_buffer_size())
        except (AttributeError, RuntimeError):
            return 0

    def drop(self, why: str) -> None:
        log.warning("dropping a client (uid %s, pid %s): %s", self.uid, self.peer_pid, why)
        # abort, not close: close() would keep the buffer until the client reads it,
        # which it never does, so the memory and the connection would stay forever.
        self.writer.transport.abort()
        self.daemon.clients.discard(self)
        self.daemon.conns.discard(self)

    def send(self, data: bytes) -> bool:
        if self.gone:
            return False
        if self.backlog() + len(data) > MAX_CLIENT_BUFFER:
            self.drop(f"over {MAX_CLIENT_BUFFER} bytes unread")
            return False
        if not self.daemon.make_room(len(data), self):
            return False
        self.writer.write(data)
        return True


def getuid() -> int | None:
    return os.getuid() if hasattr(os, "getuid") else None


def user_name(uid: int | None) -> str:
    """The user name of ``uid`` (its number when the passwd database has none)."""
    if uid is None:
        return ""
    if sys.platform == "win32":  # no passwd database
        return str(uid)
    try:
        import pwd  # noqa: PLC0415 - built in, POSIX only

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def peer_cred(writer: asyncio.StreamWriter) -> tuple[int | None, int | None]:
    """The pid and uid of the process on the other end of a Unix socket (the attach bridge;
    over SSH its uid is the login's); (None, None) where the OS does not tell (TCP)."""
    sock = writer.get_extra_info("socket")
    opt = getattr(socket, "SO_PEERCRED", None)
    if sock is None or opt is None or sock.family != getattr(socket, "AF_UNIX", None):
        return None, None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
    except OSError:
        return None, None
    return (int(pid) or None), int(uid)


async def read_lines(reader: asyncio.StreamReader, limit: int) -> AsyncIterator[bytes | None]:
    """The lines a client sends; None for a line over ``limit`` bytes, which is skipped.

    Unlike ``StreamReader.readline`` this skips the whole of an overlong line, so its
    tail is not taken for the next message and the connection stays usable.
    """
    split = LineSplitter(limit)
    while True:
        try:
            chunk = await reader.read(1 << 16)
        except ConnectionError:
            return
        for line in split.feed(chunk) if chunk else split.end():
            yield line
        if not chunk:
            return


class LineSplitter:
    """A byte stream cut into lines; None stands for a line over ``limit``, skipped whole.

    Holds at most ``limit`` bytes plus one chunk: an overlong line is dropped as it comes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.skipping = False  # inside an overlong line, until its newline

    def feed(self, chunk: bytes) -> list[bytes | None]:
        buf = self.buf
        start = len(buf)  # the newline search starts at what is new
        buf += chunk
        out: list[bytes | None] = []
        while (nl := buf.find(b"\n", start)) >= 0:
            line = bytes(buf[: nl + 1])
            del buf[: nl + 1]
            start = 0
            if self.skipping:  # the end of an overlong line
                self.skipping = False
            else:
                out.append(line if len(line) <= self.limit else None)
        if len(buf) > self.limit:
            if not self.skipping:
                self.skipping = True
                out.append(None)
            buf.clear()
        return out

    def end(self) -> list[bytes | None]:
        """At the end of the stream: a last line without its newline."""
        if not self.buf or self.skipping:
            return []
        return [bytes(self.buf) if len(self.buf) <= self.limit else None]
