"""The per-user host daemon: samples at 1 Hz, keeps an hour of history, serves clients.

One daemon per user per host (a lock file makes sure). Cores, memory and GPUs
are sampled every ``interval``; the process table, the expensive part, every
``proc_interval`` and only while a client is attached. Each client gets the
``hello``, the history ring, then live ``sample`` notifications with the
process table as changes (a full table first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import IO, Any

import msgspec

if sys.platform == "win32":
    import msvcrt
else:
    import fcntl

from llmaos_agent import __version__, endpoint
from llmaos_agent.collect.processes import diff, full
from llmaos_agent.collect.sampler import Sampler
from llmaos_agent.paths import AgentPaths
from llmaos_agent.protocol import (
    HISTORY_CHUNK_BYTES,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MAX_LINE_BYTES,
    METHOD_NOT_FOUND,
    PROTOCOL_VERSION,
    VERSION_ERROR,
    Empty,
    Handshake,
    HandshakeResult,
    Hello,
    Pong,
    Proc,
    ProcTable,
    ProtocolError,
    Request,
    decode,
    encode,
    encode_error,
    encode_history,
    encode_notification,
    encode_result,
)

log = logging.getLogger("llmaos_agent.daemon")

MAX_CLIENT_BUFFER = 8 << 20
"""A client that lets this much pile up unread is dropped, so memory stays bounded."""


class AlreadyRunning(RuntimeError):
    pass


class _Client:
    __slots__ = ("needs_full", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.needs_full = True

    def send(self, data: bytes) -> bool:
        if self.writer.is_closing():
            return False
        if self.writer.transport.get_write_buffer_size() > MAX_CLIENT_BUFFER:
            log.warning("dropping a client that does not read")
            # abort, not close: close() would keep the buffer until the client reads it,
            # which it never does, so the memory and the connection would stay forever.
            self.writer.transport.abort()
            return False
        self.writer.write(data)
        return True


class Daemon:
    def __init__(
        self,
        paths: AgentPaths,
        *,
        interval: float = 1.0,
        proc_interval: float = 2.0,
        history_seconds: float = 3600.0,
        read_only: bool = False,
        nvml: Any | None = None,
    ) -> None:
        self.paths = paths
        self.interval = interval
        self.proc_interval = proc_interval
        self.read_only = read_only
        self._nvml = nvml
        # Samples are kept encoded: an hour of 64-core samples is ~1.5 MB this way.
        self.history: deque[bytes] = deque(maxlen=max(1, int(history_seconds / interval)))
        self.clients: set[_Client] = set()
        self.table: dict[int, Proc] = {}
        self._force_procs = False
        self._next_procs = 0.0
        self._stop = asyncio.Event()
        self._lock_fd: IO[bytes] | None = None
        self.sampler: Sampler | None = None
        self.hello: Hello | None = None

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        self.paths.ensure()
        self._take_lock()
        try:
            self.sampler = Sampler(nvml=self._nvml)
            self.hello = Hello(
                protocol=PROTOCOL_VERSION,
                agent_version=__version__,
                pid=os.getpid(),
                host=self.sampler.facts(),
                caps=self.sampler.capabilities(read_only=self.read_only),
                interval=self.interval,
                proc_interval=self.proc_interval,
            )
            server = await endpoint.serve(self.paths, self._serve_client, limit=MAX_LINE_BYTES)
            loop = asyncio.get_running_loop()
            if sys.platform != "win32":
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.add_signal_handler(sig, self.stop)
            log.info("llmaos-agent %s serving (pid %d)", __version__, os.getpid())
            try:
                await self._sample_loop()
            finally:
                server.close()
                for c in list(self.clients):
                    c.writer.close()
                endpoint.cleanup(self.paths)
                self.sampler.close()
        finally:
            self._release_lock()

    # ------------------------------------------------------------ sampling

    async def _sample_loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not self._stop.is_set():
            self.tick()
            deadline += self.interval
            now = loop.time()
            if deadline < now:  # we fell behind (suspend, overload): skip, do not burst
                deadline = now + self.interval
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), deadline - now)

    def tick(self) -> None:
        assert self.sampler is not None
        sample = self.sampler.sample()
        self.history.append(encode(sample))
        if not self.clients:
            self.table = {}
            return
        now = time.monotonic()
        # Half a tick of slack: ticks come with jitter, and without it a pass due at the
        # very tick would often slip to the next one (every 3 s instead of 2).
        if self._force_procs or now >= self._next_procs - self.interval / 2:
            self._force_procs = False
            self._next_procs = now + self.proc_interval
            table = self.sampler.processes(sample)
            delta_line = encode_notification(
                "sample", msgspec.structs.replace(sample, procs=diff(self.table, table))
            )
            full_line: bytes | None = None
            self.table = table
            for c in list(self.clients):
                if c.needs_full:
                    if full_line is None:
                        full_line = encode_notification(
                            "sample", msgspec.structs.replace(sample, procs=full(table))
                        )
                    c.needs_full = False
                    self._send(c, full_line)
                else:
                    self._send(c, delta_line)
            return
        line = encode_notification("sample", sample)
        for c in list(self.clients):
            self._send(c, line)

    def _send(self, c: _Client, data: bytes) -> None:
        if not c.send(data):
            self.clients.discard(c)

    # ------------------------------------------------------------- clients

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self.hello is not None
        client = _Client(writer)
        client.send(encode_notification("hello", self.hello))
        entries = list(self.history)
        chunk: list[bytes] = []
        size = 0
        for i, e in enumerate(entries):
            chunk.append(e)
            size += len(e)
            if size >= HISTORY_CHUNK_BYTES or i == len(entries) - 1:
                client.send(encode_history(chunk, last=i == len(entries) - 1))
                chunk, size = [], 0
        if not entries:
            client.send(encode_history([], last=True))
        self.clients.add(client)
        self._force_procs = True
        try:
            await self._read_requests(reader, client)
        finally:
            self.clients.discard(client)
            writer.close()

    async def _read_requests(self, reader: asyncio.StreamReader, client: _Client) -> None:
        async for line in _lines(reader, MAX_LINE_BYTES):
            if self._stop.is_set():
                return
            if line is None:
                client.send(
                    encode_error(None, INVALID_REQUEST, f"line over {MAX_LINE_BYTES} bytes")
                )
                continue
            if not line.strip():
                continue
            try:
                msg = decode(line, notifications=False, requests=True)
            except ProtocolError as exc:
                client.send(encode_error(None, INVALID_REQUEST, str(exc)))
                continue
            if isinstance(msg, Request):
                client.send(self._answer(msg))
                if msg.method == "shutdown":
                    self.stop()
                    with contextlib.suppress(ConnectionError):
                        await client.writer.drain()
                    return

    def _answer(self, req: Request) -> bytes:
        try:
            if req.method == "handshake":
                hs: Handshake = req.params
                if hs.protocol != PROTOCOL_VERSION:
                    return encode_error(
                        req.id,
                        VERSION_ERROR,
                        f"{hs.client} speaks protocol {hs.protocol}, this agent "
                        f"({__version__}) speaks {PROTOCOL_VERSION}; install the same "
                        "llmaos-tui version on both sides",
                    )
                return encode_result(
                    req.id, HandshakeResult(protocol=PROTOCOL_VERSION, agent_version=__version__)
                )
            if req.method == "ping":
                return encode_result(req.id, Pong(t=time.time()))
            if req.method == "processes":
                return encode_result(
                    req.id, ProcTable(t=time.time(), procs=list(self._fresh_table().values()))
                )
            if req.method == "shutdown":
                return encode_result(req.id, Empty())
        except Exception as exc:
            log.exception("call %s failed", req.method)
            return encode_error(req.id, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        return encode_error(req.id, METHOD_NOT_FOUND, f"unknown method {req.method!r}")

    def _fresh_table(self) -> dict[int, Proc]:
        if not self.table:  # nobody is watching, so the table is not kept up to date
            assert self.sampler is not None
            return self.sampler.procs.snapshot()
        return self.table

    # ---------------------------------------------------------------- lock

    def _take_lock(self) -> None:
        f = open(self.paths.lock, "a+b")  # noqa: SIM115 - held for the daemon's life
        try:
            if sys.platform == "win32":
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise AlreadyRunning(f"another llmaos-agent daemon holds {self.paths.lock}") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n".encode())
        f.flush()
        self._lock_fd = f

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            self._lock_fd.close()
            self._lock_fd = None


async def _lines(reader: asyncio.StreamReader, limit: int) -> AsyncIterator[bytes | None]:
    """The lines a client sends; None for a line over ``limit`` bytes, which is skipped.

    Unlike ``StreamReader.readline`` this skips the whole of an overlong line, so its
    tail is not taken for the next message and the connection stays usable.
    """
    buf = bytearray()
    skipping = False
    while True:
        try:
            chunk = await reader.read(1 << 16)
        except ConnectionError:
            return
        if not chunk:
            if buf and not skipping:  # a last line without its newline
                yield bytes(buf) if len(buf) <= limit else None
            return
        start = len(buf)
        buf += chunk
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                if len(buf) > limit:
                    if not skipping:
                        skipping = True
                        yield None
                    buf.clear()
                break
            line = bytes(buf[: nl + 1])
            del buf[: nl + 1]
            start = 0
            if skipping:  # the end of an overlong line
                skipping = False
            elif len(line) > limit:
                yield None
            else:
                yield line
