"""A host's Docker engine, reached through its SSH connection: nothing listens on the network.

The remote engine socket (``/var/run/docker.sock``, or the user's rootless
``/run/user/UID/docker.sock``) is forwarded by asyncssh to a Unix socket in a private
(0700) temporary directory on the console, and a ``docker.DockerClient`` talks to that.
About 40 ms to connect and 1-3 ms a call (TESTBED.md), against 0.5 s a call for docker-py's
own ``ssh://``.

The docker SDK is synchronous, and the forward lives on an asyncio loop: the SDK must never
be called on the loop's thread, or the loop could not move the bytes it waits for. Two ways
in, so that holds:

- :func:`open_engine` (sync, for the CLI, tests and benchmarks): connects and forwards on a
  private loop in a background thread; use the :class:`Engine` from any thread, then close.
- :func:`forward_engine` (async, for the console that already holds a host's connection):
  forwards on the running loop; hand the :class:`Engine` to a worker thread
  (``asyncio.to_thread``) and ``await engine.aclose()`` when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncssh

from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.ssh import CIPHERS, SshOptions, connect

ROOTFUL_SOCKET = "/var/run/docker.sock"
# Images and volumes cross the console's process twice (decrypted from one host, encrypted to
# the other): the links' own cipher order, AES-GCM first (see fleet.ssh.CIPHERS).
BULK_CIPHERS = CIPHERS
# Each SSH packet costs Python work on the loop (a decrypt, a channel write): the source
# may send up to 256 KiB a packet instead of asyncssh's 32 KiB, a few times fewer of them
# for the same bytes (the image stream alone: about 15% less time here). The receive
# window stays asyncssh's (2 MiB), so a stalled move holds no more than before.
BULK_MAX_PACKET = 256 * 1024


def bulk_options() -> dict[str, Any]:
    """asyncssh options for a connection that carries a move's streams."""
    return {"encryption_algs": BULK_CIPHERS, "max_pktsize": BULK_MAX_PACKET}


PROBE_TIMEOUT = 5.0
CRIU_TIMEOUT = 20.0
CALL_TIMEOUT = 120.0  # docker-py's per-socket-operation timeout: image loads take a while

T = TypeVar("T")


class EngineUnavailable(RuntimeError):
    """No Docker engine answers on the host; the message says where it looked and why."""


@dataclass
class Engine:
    """One host's engine: a docker client on the forwarded socket, plus what a move asks of
    the host beyond the engine (does a path exist, for bind mounts)."""

    name: str
    client: Any  # docker.DockerClient; the SDK has no type hints
    remote_socket: str
    local_socket: str
    gpus: int | None = None  # known GPU count (the agent's hello), None: ask `docker info`
    mem_available: int | None = None  # bytes free now (the agent's sample), None: unknown
    _conn: asyncssh.SSHClientConnection | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _listener: asyncssh.SSHListener | None = field(default=None, repr=False)
    _tmpdir: str | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _owns_conn: bool = field(default=False, repr=False)
    _local: bool = field(default=False, repr=False)

    def path_exists(self, path: str) -> bool:
        """Whether ``path`` exists on the host (SFTP stat; never called on the loop thread)."""
        if self._local:
            return os.path.lexists(path)
        if self._conn is None or self._loop is None:
            raise EngineUnavailable(f"{self.name}: no SSH connection to check {path} with")
        return self._call(self._stat(path), PROBE_TIMEOUT * 2)

    def listening(self, ip: str, port: int) -> bool | None:
        """Whether something on the host accepts TCP connections at ``ip``:``port`` (a
        process there would make a published port fail to bind); None when it cannot be
        told. Asked through the host's own sshd (a direct-tcpip channel to that address), so
        nothing on the network is probed and no port needs to be open."""
        if self._local:
            try:
                with socket.create_connection((ip, port), timeout=PROBE_TIMEOUT):
                    return True
            except ConnectionRefusedError:
                return False
            except OSError:
                return None
        if self._conn is None or self._loop is None:
            raise EngineUnavailable(f"{self.name}: no SSH connection to probe port {port} with")
        return self._call(self._listening_remote(ip, port), PROBE_TIMEOUT * 2)

    async def _listening_remote(self, ip: str, port: int) -> bool | None:
        assert self._conn is not None
        try:
            _reader, writer = await asyncio.wait_for(
                self._conn.open_connection(ip, port), PROBE_TIMEOUT
            )
        except asyncssh.ChannelOpenError as exc:
            # sshd answers "connect failed" when nothing listens; "prohibited" when it
            # forwards no TCP at all, and then nothing can be told.
            return False if exc.code == asyncssh.OPEN_CONNECT_FAILED else None
        except (asyncssh.Error, OSError, asyncio.TimeoutError):
            return None
        writer.close()
        return True

    def criu_check(self) -> str | None:
        """None when ``criu check`` passes on the host (live moves need it), else why not.

        The command is a constant (nothing from input reaches a shell); it needs root, as
        checkpointing does."""
        if self._local:
            if shutil.which("criu") is None:
                return f"criu is not installed on {self.name}"
            try:
                cp = subprocess.run(
                    ["criu", "check"], capture_output=True, text=True, timeout=CRIU_TIMEOUT,
                    check=False,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"criu check on {self.name} did not run: {exc}"
            return _criu_verdict(self.name, cp.returncode, cp.stdout + cp.stderr)
        if self._conn is None or self._loop is None:
            raise EngineUnavailable(f"{self.name}: no SSH connection to run criu check on")
        return self._call(self._criu_remote(), CRIU_TIMEOUT + PROBE_TIMEOUT)

    async def _criu_remote(self) -> str | None:
        assert self._conn is not None
        try:
            done = await self._conn.run("criu check", timeout=CRIU_TIMEOUT)
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
            return f"criu check on {self.name} did not run: {exc or 'timed out'}"
        if done.exit_status == 127:
            return f"criu is not installed on {self.name}"
        out = "".join(
            x.decode(errors="replace") if isinstance(x, bytes) else str(x or "")
            for x in (done.stdout, done.stderr)
        )
        return _criu_verdict(self.name, done.exit_status, out)

    async def _stat(self, path: str) -> bool:
        assert self._conn is not None
        async with self._conn.start_sftp_client() as sftp:
            try:
                await sftp.stat(path)
            except asyncssh.SFTPNoSuchFile:
                return False
            return True

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        loop = self._loop
        assert loop is not None
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None  # a plain thread: what we want
        if running is loop:
            coro.close()
            raise RuntimeError("Engine calls block: run them off the event loop's thread")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    async def aclose(self) -> None:
        """Close the client, the forward and (when this engine made it) the connection."""
        with contextlib.suppress(Exception):
            self.client.close()
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.wait_closed(), 2.0)
            self._listener = None
        if self._owns_conn and self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.wait_closed(), 2.0)
        self._conn = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def close(self) -> None:
        """For an engine from :func:`open_engine`: close everything and stop its loop thread."""
        if self._local:
            with contextlib.suppress(Exception):
                self.client.close()
            return
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            raise RuntimeError("this Engine runs on the caller's loop: await engine.aclose()")
        if thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        if not thread.is_alive():
            loop.close()
        self._thread = None


def _criu_verdict(host: str, code: int | None, output: str) -> str | None:
    if code == 0:
        return None
    # criu prints its findings as "Error (file:line): what"; the first is the cause, the
    # later ones what failed because of it.
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln.split("): ", 1)[-1] for ln in lines if ln.startswith("Error")]
    why = errors[0] if errors else (lines[-1] if lines else f"exit status {code}")
    return f"criu check fails on {host}: {why}"


async def _answers(conn: asyncssh.SSHClientConnection, path: str) -> str | None:
    """None when a Docker engine answers ``/_ping`` at the remote ``path``, else why not."""
    try:
        reader, writer = await asyncio.wait_for(conn.open_unix_connection(path), PROBE_TIMEOUT)
    except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
        reason = exc.reason if isinstance(exc, asyncssh.Error) else str(exc) or "timed out"
        return f"{path}: {reason}"
    try:
        writer.write(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), PROBE_TIMEOUT)
    except (asyncssh.Error, OSError, asyncio.TimeoutError) as exc:
        return f"{path}: no answer ({exc or 'timed out'})"
    finally:
        writer.close()
    if not status.startswith(b"HTTP/1.") or b" 200 " not in status + b" ":
        return f"{path}: answered {status.decode(errors='replace').strip()!r}"
    return None


async def _find_socket(conn: asyncssh.SSHClientConnection, socket_path: str | None) -> str:
    """The remote engine socket: ``socket_path`` when given, else the system one, else the
    user's rootless one."""
    if socket_path is not None:
        why = await _answers(conn, socket_path)
        if why is not None:
            raise EngineUnavailable(f"no Docker engine answers at {why}")
        return socket_path
    reasons = []
    why = await _answers(conn, ROOTFUL_SOCKET)
    if why is None:
        return ROOTFUL_SOCKET
    reasons.append(why)
    # The user's uid without running a command: SFTP's own process is the user's, so it owns
    # /proc/self (Linux, where rootless Docker runs).
    uid = ""
    with contextlib.suppress(asyncssh.Error, OSError, asyncio.TimeoutError):
        async with conn.start_sftp_client() as sftp:
            attrs = await asyncio.wait_for(sftp.stat("/proc/self"), PROBE_TIMEOUT)
            uid = str(attrs.uid) if attrs.uid is not None else ""
    if uid.isdigit():
        rootless = f"/run/user/{uid}/docker.sock"
        why = await _answers(conn, rootless)
        if why is None:
            return rootless
        reasons.append(why)
    raise EngineUnavailable("no Docker engine answers: " + "; ".join(reasons))


async def forward_engine(
    conn: asyncssh.SSHClientConnection,
    name: str,
    *,
    socket_path: str | None = None,
    owns_conn: bool = False,
) -> Engine:
    """Forward the host's engine socket over ``conn`` (on the running loop) to a private
    local socket; return the :class:`Engine`. Its client must be used off this loop."""
    # The optional extra, and requests with it: loaded on the first move, not at start.
    import docker  # noqa: PLC0415

    remote = await _find_socket(conn, socket_path)
    tmpdir = tempfile.mkdtemp(prefix="llmaos-docker-")  # mode 0700: only we may connect
    local = str(Path(tmpdir) / "docker.sock")
    try:
        listener = await conn.forward_local_path(local, remote)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    loop = asyncio.get_running_loop()
    engine = Engine(
        name=name,
        client=None,
        remote_socket=remote,
        local_socket=local,
        _conn=conn,
        _loop=loop,
        _listener=listener,
        _tmpdir=tmpdir,
        _owns_conn=owns_conn,
    )
    try:
        # DockerClient asks the engine for its API version: a blocking call, so off the loop.
        engine.client = await asyncio.to_thread(
            docker.DockerClient, base_url=f"unix://{local}", timeout=CALL_TIMEOUT
        )
    except BaseException:
        await engine.aclose()
        raise
    return engine


def open_engine(
    spec: HostSpec,
    options: SshOptions | None = None,
    *,
    socket_path: str | None = None,
    timeout: float = 30.0,
) -> Engine:
    """Connect to ``spec`` over SSH on a private loop thread and forward its engine.

    The caller must ``close()`` the engine (or use :func:`engine`, a context manager).
    Raises :class:`~llmaos_tui.fleet.link.LinkDown` when SSH fails and
    :class:`EngineUnavailable` when no engine answers.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"engine-{spec.name}", daemon=True)
    thread.start()

    async def start() -> Engine:
        conn = await connect(spec, options, **bulk_options())
        try:
            return await forward_engine(conn, spec.name, socket_path=socket_path, owns_conn=True)
        except BaseException:
            conn.close()
            raise

    try:
        eng = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        raise
    eng._thread = thread
    return eng


@contextlib.contextmanager
def engine(
    spec: HostSpec,
    options: SshOptions | None = None,
    *,
    socket_path: str | None = None,
    timeout: float = 30.0,
) -> Iterator[Engine]:
    """``with engine(spec, options) as eng: eng.client.containers.list()``."""
    eng = open_engine(spec, options, socket_path=socket_path, timeout=timeout)
    try:
        yield eng
    finally:
        eng.close()


def local_engine(name: str, socket: str | Path) -> Engine:
    """An engine on a Unix socket this machine can open directly (the console's own host).

    Its ``close()`` closes the client only."""
    import docker  # noqa: PLC0415 (as above)

    client = docker.DockerClient(base_url=f"unix://{socket}", timeout=CALL_TIMEOUT)
    return Engine(
        name=name,
        client=cast(Any, client),
        remote_socket=str(socket),
        local_socket=str(socket),
        _local=True,
    )
