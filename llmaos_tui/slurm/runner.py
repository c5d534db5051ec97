"""Where a cluster's Slurm commands run: this machine, or the shell of an inventory host.

A runner takes an argv list, never a shell string. :class:`LocalRunner` starts it with
``exec`` semantics (no shell) and this process's environment (``SLURM_CONF`` and the like
pass through). :class:`SshRunner` runs it on the host's SSH connection, made exactly as
the console's links make theirs (:func:`llmaos_tui.fleet.ssh.connect`: known_hosts
verified, the hosts file's user, port, key and jump). An SSH exec channel carries one
command line that the login shell splits, so the argv is sent as ``shlex.join(argv)``:
every element is quoted for a POSIX shell (``'...'`` with ``'`` written as ``'"'"'``),
so the shell sees exactly these words, and nothing in them (``;``, ``$(...)``, spaces,
newlines, a leading ``-`` aside, which each command's own argv rules govern) is read
as shell syntax. Windows hosts are refused: Slurm runs on POSIX login nodes.

Each stream is read up to ``max_bytes`` (a host cannot make the console hold more for
one command) and the command is ended after ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from llmaos_tui.fleet.link import LinkDown

if TYPE_CHECKING:
    import asyncssh

    from llmaos_tui.fleet.inventory import HostSpec
    from llmaos_tui.fleet.ssh import SshOptions

MAX_OUTPUT = 8 << 20
READ_CHUNK = 65536


class LinkLost(LinkDown):
    """The SSH connection went after the command had started: it may have acted (the
    change path audits that as ``unknown``, not ``failed``)."""


@dataclass(frozen=True)
class Result:
    """A finished command: ``rc`` None when it was ended for taking too long."""

    rc: int | None
    out: str
    err: str


class Runner(Protocol):
    """Runs Slurm's commands for one cluster (``where``: the host, for messages and the
    audit log; ``login``: the user they run as, where known)."""

    where: str
    login: str | None

    async def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, max_bytes: int = MAX_OUTPUT
    ) -> Result: ...

    async def close(self) -> None: ...


async def _take(stream: Any, limit: int) -> bytes:
    buf = bytearray()
    while chunk := await stream.read(READ_CHUNK):
        if len(buf) <= limit:
            buf += chunk  # past the limit the rest is read and dropped, so the writer ends
    return bytes(buf[:limit])


class LocalRunner:
    """This machine: argv run directly, this process's environment (or ``env``)."""

    def __init__(self, env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        self.where = "local"
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        from llmaos_tui.fleet.local import local_user  # noqa: PLC0415

        self.login: str | None = local_user()

    async def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, max_bytes: int = MAX_OUTPUT
    ) -> Result:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            return Result(127, "", f"{argv[0]}: command not found on {self.where}")
        except OSError as exc:
            return Result(126, "", f"{argv[0]}: {exc.strerror or exc}")

        async def collect() -> tuple[bytes, bytes]:
            assert proc.stdout is not None and proc.stderr is not None
            out, err = await asyncio.gather(
                _take(proc.stdout, max_bytes), _take(proc.stderr, max_bytes)
            )
            await proc.wait()
            return out, err

        try:
            out, err = await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            return Result(None, "", f"{argv[0]}: no answer within {timeout:.0f} s")
        except BaseException:  # cancelled (the requests screen went): no child left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            with contextlib.suppress(BaseException):
                await asyncio.shield(proc.wait())
            raise
        return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    async def close(self) -> None:
        return None


class SshRunner:
    """An inventory host's shell over one SSH connection, opened at the first command and
    kept for the next ones until :meth:`close`."""

    def __init__(self, spec: HostSpec, options: SshOptions | None = None) -> None:
        self.spec = spec
        self.options = options
        self.where = spec.name
        self.login: str | None = spec.user
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._lock:
            if self._conn is None:
                if self.spec.os == "windows":
                    raise LinkDown(f"{self.where}: a Slurm login host must be a POSIX host")
                from llmaos_tui.fleet.ssh import connect  # noqa: PLC0415 - asyncssh is slow to import

                self._conn = await connect(self.spec, self.options)
                self.login = self._conn.get_extra_info("username") or self.spec.user
            return self._conn

    async def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, max_bytes: int = MAX_OUTPUT
    ) -> Result:
        import asyncssh  # noqa: PLC0415

        conn = await self._connection()
        line = shlex.join(argv)  # every element quoted: see the module's docstring
        try:
            proc = await conn.create_process(line, encoding=None, stdin=asyncssh.DEVNULL)
        except (asyncssh.Error, OSError) as exc:
            await self._forget(conn)  # the next command connects again
            raise LinkDown(f"{self.where}: cannot run {argv[0]}: {exc}") from exc

        async def collect() -> tuple[bytes, bytes]:
            out, err = await asyncio.gather(
                _take(proc.stdout, max_bytes), _take(proc.stderr, max_bytes)
            )
            await proc.wait_closed()
            return out, err

        try:
            out, err = await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            return Result(None, "", f"{argv[0]}: no answer within {timeout:.0f} s")
        except (asyncssh.Error, OSError) as exc:
            await self._forget(conn)
            raise LinkLost(f"{self.where}: SSH connection lost: {exc}") from exc
        finally:
            proc.close()
        return Result(proc.exit_status, out.decode(errors="replace"), err.decode(errors="replace"))

    async def _forget(self, conn: asyncssh.SSHClientConnection) -> None:
        """Drop a connection that failed, so the next command opens a new one (a login
        host that rebooted would otherwise fail every poll until the console restarts)."""
        async with self._lock:
            if self._conn is conn:
                self._conn = None
        conn.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 2.0)
