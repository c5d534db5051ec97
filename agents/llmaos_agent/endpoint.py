"""The daemon's local endpoint: a socket only its user can open.

On Unix a socket file with mode 0600 inside a 0700 directory. On Windows (or
with ``LLMAOS_AGENT_ENDPOINT=tcp``) a loopback TCP port, whose clients must
first send a random token kept in a file only the user can read. Neither is
reachable from the network.

:func:`connect` is all ``attach`` needs, so this module imports neither asyncio
(the daemon's side, :func:`serve`, does) nor, but for the TCP endpoint, hmac and
secrets: they cost the attach bridge and the daemon megabytes (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from contextlib import suppress
from typing import TYPE_CHECKING

from llmaos_agent.paths import AgentPaths, open_file

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

TOKEN_BYTES = 32


def kind() -> str:
    forced = os.environ.get("LLMAOS_AGENT_ENDPOINT")
    if forced in ("unix", "tcp"):
        return forced
    return "unix" if hasattr(socket, "AF_UNIX") and sys.platform != "win32" else "tcp"


async def serve(paths: AgentPaths, handler: Handler, *, limit: int) -> asyncio.Server:
    import asyncio  # noqa: PLC0415 - the daemon has it already; connect() must not need it

    if sys.platform != "win32" and kind() == "unix":
        with suppress(FileNotFoundError):
            paths.socket.unlink()  # stale: we hold the daemon lock, so nobody serves it
        old = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            server = await asyncio.start_unix_server(handler, path=str(paths.socket), limit=limit)
        finally:
            os.umask(old)
        return server

    import hmac  # noqa: PLC0415 - only the TCP endpoint needs them
    import secrets  # noqa: PLC0415

    token = secrets.token_hex(TOKEN_BYTES)

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
        except (asyncio.TimeoutError, ValueError, ConnectionError):
            line = b""
        if not hmac.compare_digest(line.strip(), token.encode()):
            writer.close()
            return
        await handler(reader, writer)

    server = await asyncio.start_server(guarded, host="127.0.0.1", port=0, limit=limit)
    port = server.sockets[0].getsockname()[1]
    tmp = paths.endpoint_file.with_suffix(".tmp")
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        json.dump({"port": port, "token": token, "pid": os.getpid()}, f)
    os.replace(tmp, paths.endpoint_file)
    return server


def peer_cred(sock: socket.socket) -> tuple[int | None, int | None]:
    """The pid and uid of the process at the other end of a Unix socket (SO_PEERCRED), as
    the kernel recorded them at connect; (None, None) where the OS does not tell (TCP,
    macOS). Both ends use it: the daemon of its clients, ``attach`` of the daemon."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None or sock.family != getattr(socket, "AF_UNIX", None):
        return None, None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    except OSError:
        return None, None
    pid, uid, _gid = struct.unpack("3i", creds)
    return (int(pid) or None), int(uid)


def cleanup(paths: AgentPaths) -> None:
    for p in (paths.socket, paths.endpoint_file):
        with suppress(FileNotFoundError):
            p.unlink()


def connect(paths: AgentPaths, timeout: float = 5.0) -> socket.socket:
    """A blocking connection to the running daemon; OSError when there is none."""
    if sys.platform != "win32" and kind() == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(timeout)
            s.connect(str(paths.socket))
        except OSError:
            s.close()
            raise
        s.settimeout(None)
        return s
    try:
        info = json.loads(paths.endpoint_file.read_text())
        port, token = int(info["port"]), str(info["token"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConnectionRefusedError(f"no daemon endpoint in {paths.endpoint_file}: {exc}") from exc
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(None)
    s.sendall(token.encode() + b"\n")
    return s
