"""A real SSH server on 127.0.0.1 for tests that need no root: asyncssh's server.

It authenticates with a generated client key, runs each exec request with
``/bin/sh -c`` in a private home directory (as sshd runs the user's shell there),
serves SFTP inside that home, and can drop its connections, go away, come back
on the same port, or change its host key. ``override`` replaces every requested
command (a misbehaving agent behind a real SSH channel). ``refuse_logins`` makes it
refuse every login as sshd does a key it does not know; ``logins`` records when each
login began, so tests can count what a client's retries cost a host. :class:`DeadPort`
stands on a port where sshd has gone: it counts the connects it accepts and drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import asyncssh


class _Server(asyncssh.SSHServer):
    def __init__(self, owner: SshServer) -> None:
        self.owner = owner

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.owner.connects.append(time.monotonic())
        self.owner.conns.add(conn)
        self.conn = conn

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.conns.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        # One call per connection that gets as far as authenticating: one login attempt.
        self.owner.logins.append(time.monotonic())
        if self.owner.refuse_logins:
            # As sshd with the client's key missing from authorized_keys: the key is
            # offered, refused, and the client gives up with PermissionDenied.
            self.conn.set_authorized_keys(self.owner.strangers)
        return True


class SshServer:
    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_path = root / "client_key"
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(self.client_key_path))
        client_pub = asyncssh.read_private_key(str(self.client_key_path)).export_public_key()
        self.authorized = asyncssh.import_authorized_keys(client_pub.decode())
        stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key()
        self.strangers = asyncssh.import_authorized_keys(stranger.decode())
        self.refuse_logins = False
        self.logins: list[float] = []
        """time.monotonic() of each login attempt (authentication begun)."""
        self.connects: list[float] = []
        """time.monotonic() of each SSH connection accepted (before host keys or logins)."""
        self.known_hosts = root / "known_hosts"
        self.env = {**os.environ, **(env or {})}
        self.override: str | None = None
        self.commands: list[str] = []
        self.port = 0
        self.conns: set[asyncssh.SSHServerConnection] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._procs: set[asyncio.subprocess.Process] = set()

    def trust(self) -> None:
        """Write this server's current key into the client's known_hosts."""
        line = self.host_key.export_public_key("openssh").decode().strip()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {line}\n")

    async def start(self) -> None:
        self._acceptor = await asyncssh.listen(
            "127.0.0.1",
            self.port,
            server_factory=lambda: _Server(self),
            server_host_keys=[self.host_key],
            authorized_client_keys=self.authorized,
            process_factory=self._run,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=os.fsencode(self.home)),
            allow_scp=False,
            encoding=None,
            reuse_address=True,
        )
        self.port = self._acceptor.get_port()

    async def stop(self) -> None:
        """Stop listening and drop every connection (a host going away)."""
        await self.stop_listening()
        await self.drop()

    async def stop_listening(self) -> None:
        """Stop accepting; the connections made stay up until :meth:`drop`."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None

    async def drop(self) -> None:
        """Hang up on every connection; when it returns they are closed here and every
        session's process is gone (as sshd's are when the host goes away)."""
        conns, procs = list(self.conns), list(self._procs)
        for conn in conns:
            conn.abort()
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        gone = [conn.wait_closed() for conn in conns] + [proc.wait() for proc in procs]
        await asyncio.wait_for(asyncio.gather(*gone), 30)

    async def replace_host_key(self) -> None:
        await self.stop()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        await self.start()

    async def _run(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or ""
        self.commands.append(command)
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            self.override or command,
            cwd=self.home,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._procs.add(proc)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        feed = asyncio.ensure_future(_feed(process.stdin, proc.stdin))
        outs = asyncio.gather(
            _copy(proc.stdout, process.stdout), _copy(proc.stderr, process.stderr)
        )
        closed = asyncio.ensure_future(process.channel.wait_closed())
        either: set[asyncio.Future[Any]] = {outs, closed}
        try:
            done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if outs in done:
                # As sshd does: output ends, then the exit status, then the channel closes.
                process.exit(await proc.wait())
            else:  # the client went away: sshd hangs up on the session's processes
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        finally:
            feed.cancel()
            closed.cancel()
            outs.cancel()
            self._procs.discard(proc)


async def _copy(src: asyncio.StreamReader, dst: asyncssh.SSHWriter[bytes]) -> None:
    with contextlib.suppress(asyncssh.Error, OSError):
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()


async def _feed(src: asyncssh.SSHReader[bytes], dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    except (asyncssh.Error, OSError):
        pass
    finally:
        dst.close()  # stdin EOF reaches the command, as with sshd


class DeadPort:
    """A port where nothing speaks SSH any more: each connect is accepted and closed at
    once (the client sees the connection lost before any banner), and its time kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepts: list[float] = []
        """time.monotonic() of each connect accepted."""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts.append(time.monotonic())
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
