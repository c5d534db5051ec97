"""The per-user host daemon: samples at 1 Hz, keeps an hour of history, serves clients.

One daemon per user per host (a lock file makes sure). Cores, memory and GPUs
are sampled every ``interval``; the process table, the expensive part, every
``proc_interval`` and only while a client is attached. Each client gets the
``hello``, the history ring, then live ``sample`` notifications with the
process table as changes (a full table first).

Containers: the engine is asked for its list every ``CONTAINER_INTERVAL`` seconds while a
client is attached, in a thread (an engine may be slow; sampling must not wait on it), and
each process-table pass sums their processes' load with that same table; what changed goes
out as a ``containers`` notification just before the pass's sample, the whole list to a
client when it attaches. ``containers.start/stop/restart`` are changes (refused read-only,
audited) and, like ``containers.logs``, run in a thread, answered when the engine is done.

Fairness and bounds (no client stalls the others or the sampling): one line of a client is
handled per turn of the loop; a client whose unread output passes :data:`PAUSE_BYTES` is
not read from (its calls wait) until it drains, and history goes out the same way, chunk
by chunk; a client that lets :data:`MAX_CLIENT_BUFFER` pile up, or stays over
:data:`PAUSE_BYTES` for :data:`STALL_S`, is dropped, and so is the largest when all
together hold more than :data:`MAX_TOTAL_BUFFER`. At most :data:`MAX_CLIENTS` connect at
once; one more is told why and closed. Nothing is answered to a client that has gone.

Audit (fails closed): before a change is made the audit log is checked to take a line
(it opens for appending, its filesystem has room), and when it cannot, the change is
refused. The operator recorded is the peer's uid from SO_PEERCRED (its user name) beside
the name the console claims; a peer of another uid than the daemon's (or root) is refused.
The daemon's own acts (dispatch, a request's end, adoption at start, stop) are audited
too, and while the log cannot be written the queue starts nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import IO, Any, Final, NamedTuple

from llmaos_agent import __version__, container_control, control, endpoint
from llmaos_agent.audit import AuditLog, AuditUnavailable
from llmaos_agent.collect.sampler import Sampler
from llmaos_agent.paths import AgentPaths, open_file, try_lock
from llmaos_agent.procdelta import diff, full
from llmaos_agent.protocol import (
    CALL_SPECS,
    HISTORY_CHUNK_BYTES,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_CONTAINERS_PER_MESSAGE,
    MAX_LINE_BYTES,
    MAX_REQUESTS_PER_MESSAGE,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PROTOCOL_VERSION,
    READ_ONLY_ERROR,
    REFUSED,
    VERSION_ERROR,
    BadParams,
    CallSpec,
    Change,
    Container,
    ContainerDelta,
    ContainerLog,
    ContainerLogQuery,
    ContainerRef,
    Empty,
    Handshake,
    HandshakeResult,
    Hello,
    LogQuery,
    Pong,
    Proc,
    ProcTable,
    ProtocolError,
    Renice,
    Reprioritize,
    Request,
    RequestDelta,
    RequestInfo,
    RequestList,
    RequestQuery,
    RequestRef,
    RequestSpec,
    Sample,
    SendSignal,
    SetAffinity,
    Struct,
    decode,
    encode,
    encode_error,
    encode_history,
    encode_notification,
    encode_result,
    replace,
)
from llmaos_agent.requests.queue import NotFound, QueueError, RequestQueue
from llmaos_agent.requests.store import StoreUnavailable

log = logging.getLogger("llmaos_agent.daemon")

CONTAINER_INTERVAL = 3.0
"""Seconds between the engine's container lists while a client is attached."""

DISPATCH_DELAY_S = 0.02
"""After a request change, how long to wait for more before starting what fits."""

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


class AlreadyRunning(RuntimeError):
    pass


class _Client:
    __slots__ = ("claimed", "daemon", "needs_full", "over_since", "peer_pid", "tasks", "uid",
                 "user", "writer")  # fmt: skip

    def __init__(self, writer: asyncio.StreamWriter, daemon: Daemon) -> None:
        self.writer = writer
        self.daemon = daemon
        self.needs_full = True
        self.claimed = ""  # the operator name the console's handshake gives: not checked
        self.peer_pid, self.uid = _peer_cred(writer)
        # Without SO_PEERCRED (the loopback TCP endpoint) the peer proved it holds the token
        # in a file only the daemon's user can read: it is that user.
        self.user = _user_name(self.uid if self.uid is not None else _getuid())
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


class _Done(NamedTuple):
    """What a change's handler did: the call's result and the audit line's before/after."""

    result: Struct
    before: str
    after: str
    target: str = ""  # what the change turned out to touch, when it says more than the call


class _CallError(Exception):
    """Raised by a handler to answer its call with ``code`` (not audited as a refusal)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


_Handler = Callable[[Request, "_Client | None"], Any]
"""A call's handler: returns the result (a read) or a :class:`_Done` (a change); a threaded
call's handler is a coroutine function returning the same. It raises to refuse."""

_REFUSALS: Final = (control.Refused, QueueError, container_control.Refused)
"""What a change's handler raises to refuse it (nothing changed): answered REFUSED."""


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
        slots_per_core: int = 1,
        aging_s: float = 60.0,
        cancel_grace_s: float = 10.0,
    ) -> None:
        self.paths = paths
        self.interval = interval
        self.proc_interval = proc_interval
        self.read_only = read_only
        self._nvml = nvml
        # Samples are kept encoded: an hour of 64-core samples is ~1.5 MB this way.
        self.history: deque[bytes] = deque(maxlen=max(1, int(history_seconds / interval)))
        self.clients: set[_Client] = set()  # those that get the live stream
        self.conns: set[_Client] = set()  # every client served (greeting ones too)
        self.table: dict[int, Proc] = {}
        self._force_procs = False
        self._next_procs = 0.0
        self._stop = asyncio.Event()
        self._lock_fd: IO[bytes] | None = None
        self.sampler: Sampler | None = None
        self.hello: Hello | None = None
        self.queue: RequestQueue | None = None
        self._queue_opts = {
            "slots_per_core": slots_per_core,
            "aging_s": aging_s,
            "grace_s": cancel_grace_s,
        }
        self.audit = AuditLog(paths.state / "audit.log")
        self._audit_error: str | None = None  # why the last line failed; None: it works
        self._me = _user_name(os.getuid()) if hasattr(os, "getuid") else ""
        self.queue_reason: str | None = None  # why there is no request queue
        self._req_states: dict[str, str] = {}  # each request's state, as last heard
        self._dispatch_handle: asyncio.TimerHandle | None = None
        self._appended = 0  # samples ever put in the history ring
        self.containers: dict[str, Container] = {}  # as the attached clients last heard
        self._containers_at = -CONTAINER_INTERVAL  # monotonic time of the last list
        self._containers_task: asyncio.Task[bool] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # container calls in flight
        self._handlers = self._handler_table()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        self.paths.ensure()
        self._take_lock()
        try:
            self.sampler = Sampler(nvml=self._nvml)
            # Before the hello, so its capabilities say whether containers can be listed.
            await self._refresh_containers()
            caps = self.sampler.capabilities(read_only=self.read_only)
            self._open_queue()
            if self.queue is None:
                caps = replace(caps, queue=False, queue_reason=self.queue_reason)
            self.hello = Hello(
                protocol=PROTOCOL_VERSION,
                agent_version=__version__,
                pid=os.getpid(),
                host=self.sampler.facts(),
                caps=caps,
                interval=self.interval,
                proc_interval=self.proc_interval,
            )
            self._audit_adopted()
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
                for task in list(self._tasks):
                    task.cancel()
                endpoint.cleanup(self.paths)
                self._own_audit("daemon.stop", "daemon", "", "", "ok")
                self.sampler.close()
                if self.queue is not None:
                    self.queue.close()
        finally:
            self._release_lock()

    def _open_queue(self) -> None:
        """The request queue; when its store cannot be opened (a corrupt, truncated or empty
        DB, moved aside by the store) the daemon serves without it and says why."""
        try:
            self.queue = RequestQueue(
                self.paths.state,
                on_change=self._requests_changed,
                **self._queue_opts,  # type: ignore[arg-type]
            )
        except StoreUnavailable as exc:
            self.queue = None
            self.queue_reason = str(exc) or type(exc).__name__
            log.error("the request queue is unavailable: %s", self.queue_reason)

    def _audit_adopted(self) -> None:
        """Requests found running at start (their supervisors lived on) are this daemon's
        now: say so, and remember every request's state to audit its next transition."""
        if self.queue is None:
            return
        for info in self.queue.snapshot():
            self._req_states[info.id] = info.state
            if info.state == "running":
                self._own_audit("requests.adopt", f"request {info.id}", "", _describe(info),
                                "ok")  # fmt: skip

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
        self._appended += 1
        self._police_clients()
        if self.queue is not None:
            self._tick_queue(self.queue, sample)
        if not self.clients:
            self.table = {}
            self.containers = {}
            return
        if time.monotonic() - self._containers_at >= CONTAINER_INTERVAL:
            self._start_container_refresh()
        now = time.monotonic()
        # Half a tick of slack: ticks come with jitter, and without it a pass due at the
        # very tick would often slip to the next one (every 3 s instead of 2).
        if self._force_procs or now >= self._next_procs - self.interval / 2:
            self._force_procs = False
            self._next_procs = now + self.proc_interval
            self._process_pass(sample)
            return
        line = encode_notification("sample", sample)
        for c in list(self.clients):
            self._send(c, line)

    def _tick_queue(self, queue: RequestQueue, sample: Sample) -> None:
        queue.update_resources(list(sample.cpu), [(g.uuid, g.util or 0.0) for g in sample.gpus])
        # Read-only: observe only (what ended is recorded), start nothing. While the
        # audit log cannot be written, nothing is started either: a dispatch is audited.
        try:
            queue.tick(start=not self.read_only and self._audit_works())
        except Exception:  # one bad pass must not stop the sampling
            log.exception("request queue tick failed")

    def _process_pass(self, sample: Sample) -> None:
        """A sample with the process table: as changes, or whole to a client that is new."""
        assert self.sampler is not None
        table = self.sampler.processes(sample)
        # Before the sample, so a console that sees the pass's processes has its
        # containers' load too.
        try:
            self._send_containers(table)
        except Exception:  # one bad pass must not stop the sampling
            log.exception("container update failed")
        delta_line = encode_notification("sample", replace(sample, procs=diff(self.table, table)))
        full_line: bytes | None = None
        self.table = table
        for c in list(self.clients):
            if c.needs_full:
                if full_line is None:
                    full_line = encode_notification("sample", replace(sample, procs=full(table)))
                c.needs_full = False
                self._send(c, full_line)
            else:
                self._send(c, delta_line)

    # ---------------------------------------------------------- containers

    def _start_container_refresh(self) -> asyncio.Task[bool]:
        """The engine's list, in a thread; one at a time (a slow engine is not piled on)."""
        task = self._containers_task
        if task is None or task.done():
            self._containers_at = time.monotonic()
            task = self._containers_task = asyncio.ensure_future(self._refresh_containers())
        return task

    async def _refresh_containers(self) -> bool:
        assert self.sampler is not None
        was = self.sampler.docker_reason
        try:
            ok = await asyncio.to_thread(self.sampler.refresh_containers)
        except Exception:  # a collector bug must not stop the daemon
            log.exception("container list failed")
            return False
        now = self.sampler.docker_reason
        if self.hello is not None and now != was:
            # Clients that attach from now on hear what the engine is doing.
            caps = replace(self.hello.caps, docker=now is None, docker_reason=now)
            self.hello = replace(self.hello, caps=caps)
            log.info("containers: %s", now or "the Docker engine answers")
        return ok

    def _send_containers(self, table: dict[int, Proc]) -> None:
        assert self.sampler is not None
        if self.sampler.containers is None:
            return
        current = {c.id: c for c in self.sampler.container_list(table)}
        old = self.containers
        changed = [c for cid, c in current.items() if old.get(cid) != c]
        gone = [cid for cid in old if cid not in current]
        self.containers = current
        if not changed and not gone:
            return
        self._broadcast_changes("containers.changed", ContainerDelta, changed, gone,
                                MAX_CONTAINERS_PER_MESSAGE)  # fmt: skip

    def _send_all_containers(self, client: _Client) -> None:
        """The whole list, to a client that attaches, without making it wait (it gets its
        samples meanwhile) and never a stale one: the list goes out once a refresh that
        began after the client came has finished. A refresh already under way began before
        (it may have read the engine before a change the client made elsewhere, such as a
        container moved away), so another follows it; clients that come together share one."""

        def send(_task: asyncio.Task[bool]) -> None:
            if client in self.clients:
                try:
                    self._send_container_list(client)
                except Exception:  # the list is extra; the client keeps its samples
                    log.exception("container list for a new client failed")

        def after_current(_task: asyncio.Task[bool]) -> None:
            if client in self.clients:
                self._start_container_refresh().add_done_callback(send)

        task = self._containers_task
        if task is not None and not task.done():
            task.add_done_callback(after_current)
        else:
            self._start_container_refresh().add_done_callback(send)

    def _send_container_list(self, client: _Client) -> None:
        assert self.sampler is not None
        listed = self.sampler.container_list(self.table or None)
        for i in range(0, max(1, len(listed)), MAX_CONTAINERS_PER_MESSAGE):
            part = listed[i : i + MAX_CONTAINERS_PER_MESSAGE]
            last = i + MAX_CONTAINERS_PER_MESSAGE >= len(listed)
            client.send(
                encode_notification(
                    "containers.changed", ContainerDelta(full=i == 0, upsert=part, last=last)
                )
            )

    def _send(self, c: _Client, data: bytes) -> None:
        if not c.send(data):
            self.clients.discard(c)

    # --------------------------------------------------------------- bounds

    def make_room(self, extra: int, sender: _Client) -> bool:
        """Keep all clients' unread output under MAX_TOTAL_BUFFER by dropping the client
        that holds the most; False when that is ``sender`` (its write is not made)."""
        conns = self.conns
        total = extra + sum(c.backlog() for c in conns)
        while total > MAX_TOTAL_BUFFER and conns:
            worst = max(conns, key=lambda c: c.backlog())
            held = worst.backlog()
            if held == 0:
                break  # nothing to take back: the write alone is big; the per-client bound holds
            worst.drop(f"all clients hold over {MAX_TOTAL_BUFFER} bytes unread")
            conns.discard(worst)
            total -= held
            if worst is sender:
                return False
        return not sender.gone

    def _police_clients(self) -> None:
        """Once a tick: drop a client that stays over PAUSE_BYTES unread for STALL_S."""
        now = time.monotonic()
        for c in list(self.conns):
            if c.backlog() <= PAUSE_BYTES:
                c.over_since = None
            elif c.over_since is None:
                c.over_since = now
            elif now - c.over_since > STALL_S:
                c.drop(f"over {PAUSE_BYTES} bytes unread for {STALL_S:.0f} s")
                self.conns.discard(c)

    async def _drained(self, client: _Client) -> bool:
        """Wait while ``client`` has PAUSE_BYTES unread (reading nothing from it meanwhile);
        False when it has gone (dropped by the bounds above, or closed)."""
        if client.backlog() > PAUSE_BYTES:
            try:
                await client.writer.drain()
            except (ConnectionError, RuntimeError):
                return False
        return not client.gone

    # ------------------------------------------------------------- clients

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self.hello is not None
        client = _Client(writer, self)
        if len(self.conns) >= MAX_CLIENTS:
            log.warning("refusing a client: %d connected already", len(self.conns))
            await self._refuse(client, f"too many clients: this agent serves at most "
                               f"{MAX_CLIENTS} at once; close one and try again")  # fmt: skip
            return
        uid = client.uid
        if uid is not None and hasattr(os, "getuid") and uid not in (os.getuid(), 0):
            # The socket is 0600 already; this is defence in depth (a chmod, a bind mount).
            self._audit("connect", f"uid {uid}", "", "", "refused: another user", client)
            await self._refuse(client, f"uid {uid} ({client.user}) may not use this agent: it "
                               f"serves uid {os.getuid()} ({self._me}) only")  # fmt: skip
            return
        self.conns.add(client)
        try:
            if not await self._greet(client):
                return
            self.clients.add(client)
            try:
                self._send_all_containers(client)
            except Exception:  # the container list is extra; samples must reach the client
                log.exception("container list for a new client failed")
            self._force_procs = True
            await self._read_requests(reader, client)
        finally:
            self.conns.discard(client)
            self.clients.discard(client)
            for task in list(client.tasks):
                task.cancel()  # only reads are cancelled: changes are not put in client.tasks
            writer.close()

    async def _refuse(self, client: _Client, why: str) -> None:
        client.writer.write(encode_error(None, REFUSED, why))
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(client.writer.drain(), 5.0)
        client.writer.close()

    async def _greet(self, client: _Client) -> bool:
        """hello, the history ring and the request list; False when the client went."""
        assert self.hello is not None
        client.send(encode_notification("hello", self.hello))
        return await self._send_history(client) and self._send_requests(client)

    async def _send_history(self, client: _Client) -> bool:
        """The history ring, chunk by chunk, each only once the client has read most of the
        last (a client that does not read holds one chunk, not the ring); the samples of
        the ring that arrive meanwhile follow, so none is missed or sent twice before the
        client joins the live stream. False when the client went."""
        pos = self._appended - len(self.history)  # the absolute index of the next to send
        chunk: list[bytes] = []
        size = 0
        while True:
            start = self._appended - len(self.history)
            pos = max(pos, start)  # what fell off the ring while we waited is not sent
            if pos >= self._appended:
                break
            entries = list(itertools.islice(self.history, pos - start, None))
            pos = self._appended
            for e in entries:
                chunk.append(e)
                size += len(e)
                if size < HISTORY_CHUNK_BYTES:
                    continue
                if not client.send(encode_history(chunk, last=False)):
                    return False
                chunk, size = [], 0
                if not await self._drained(client):
                    return False
        return client.send(encode_history(chunk, last=True))

    def _send_requests(self, client: _Client) -> bool:
        """The request list, sent at once (it must not miss a change made meanwhile);
        bounded by the queue's size and by the bounds on unread output."""
        if self.queue is None:
            return True
        reqs = self.queue.snapshot()
        for i in range(0, max(1, len(reqs)), MAX_REQUESTS_PER_MESSAGE):
            part = reqs[i : i + MAX_REQUESTS_PER_MESSAGE]
            last = i + MAX_REQUESTS_PER_MESSAGE >= len(reqs)
            delta = RequestDelta(full=i == 0, upsert=part, last=last)
            if not client.send(encode_notification("requests.changed", delta)):
                return False
        return True

    async def _read_requests(self, reader: asyncio.StreamReader, client: _Client) -> None:
        async for line in _lines(reader, MAX_LINE_BYTES):
            # Nothing is computed for a client that has gone (closed, dropped).
            if self._stop.is_set() or not await self._drained(client):
                return
            self._handle_line(line, client)
            if self._stop.is_set():  # a shutdown it asked for: its answer goes out first
                with contextlib.suppress(ConnectionError):
                    await client.writer.drain()
                return
            # One line per turn of the loop: a client that pipelines thousands of calls
            # takes turns with the others and with the sampling.
            await asyncio.sleep(0)

    # --------------------------------------------------------------- calls
    #
    # Every call goes one way: CALL_SPECS (protocol.py) says what it is, _admit refuses
    # what may not run (read-only, a missing queue or engine, an audit log that cannot take
    # the record), the method's handler does the work, and _outcome answers and audits.
    # Handlers raise to refuse; they never answer, refuse read-only or audit themselves.

    def _handler_table(self) -> dict[str, _Handler]:
        """Each call's handler, registered once; checked against the protocol's table so a
        call cannot be declared without a handler, nor a thread's work run inline."""
        table: dict[str, _Handler] = {
            "handshake": self._handshake,
            "ping": self._ping,
            "processes": self._processes,
            "shutdown": self._shutdown,
            "requests.submit": self._submit,
            "requests.list": self._list_requests,
            "requests.get": self._get_request,
            "requests.log": self._request_log,
            "requests.prio": self._reprioritize,
            "requests.hold": self._request_act(RequestQueue.hold),
            "requests.release": self._request_act(RequestQueue.release),
            "requests.top": self._request_act(RequestQueue.top),
            "requests.cancel": self._request_act(RequestQueue.cancel),
            "requests.withdraw": self._request_act(RequestQueue.withdraw, after="withdrawn"),
            "proc.renice": self._renice,
            "proc.affinity": self._set_affinity,
            "proc.signal": self._send_signal,
            "containers.start": self._container_act,
            "containers.stop": self._container_act,
            "containers.restart": self._container_act,
            "containers.logs": self._container_logs,
        }
        if table.keys() != CALL_SPECS.keys():
            raise RuntimeError(f"calls without handlers: {set(CALL_SPECS) ^ set(table)}")
        for method, handler in table.items():
            if inspect.iscoroutinefunction(handler) != CALL_SPECS[method].threaded:
                raise RuntimeError(f"{method}: threaded calls, and only they, are async")
        return table

    def _handle_line(self, line: bytes | None, client: _Client) -> None:
        msg = self._decode(line, client)
        if msg is None:
            return
        spec = CALL_SPECS.get(msg.method)
        if spec is None or not spec.threaded:
            client.send(self._answer(msg, client))
            if self.queue is not None:
                if spec is not None and spec.changes and spec.needs == "queue":
                    self._dispatch_soon()
                self.queue.flush()
            return
        refusal = self._admit(msg, spec, client)
        if refusal is not None:
            client.send(refusal)
            return
        # The engine may take seconds (a stop waits out its grace): answered when done,
        # while this client's other calls go on.
        task = asyncio.ensure_future(self._answer_later(msg, spec, client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if not spec.changes:
            # A read: cancelled if the client goes. A change is carried through and
            # audited either way.
            client.tasks.add(task)
            task.add_done_callback(client.tasks.discard)

    def _decode(self, line: bytes | None, client: _Client) -> Request | None:
        """The call on ``line``; None when there is none (the error already answered)."""
        if line is None:
            client.send(encode_error(None, INVALID_REQUEST, f"line over {MAX_LINE_BYTES} bytes"))
            return None
        if not line.strip():
            return None
        try:
            msg = decode(line, notifications=False, requests=True)
        except BadParams as exc:
            client.send(encode_error(exc.id, INVALID_PARAMS, str(exc)))
            return None
        except ProtocolError as exc:
            client.send(encode_error(None, INVALID_REQUEST, str(exc)))
            return None
        except RecursionError:  # in case a decoder below protocol.decode lets one through
            client.send(encode_error(None, INVALID_REQUEST, "JSON nested too deeply"))
            return None
        return msg if isinstance(msg, Request) else None

    def _answer(self, req: Request, client: _Client | None = None) -> bytes:
        """The answer to a call served inline (not threaded)."""
        spec = CALL_SPECS.get(req.method)
        if spec is None:
            return encode_error(req.id, METHOD_NOT_FOUND, f"unknown method {req.method!r}")
        assert not spec.threaded, "a threaded call is answered by _answer_later"
        refusal = self._admit(req, spec, client)
        if refusal is not None:
            return refusal
        # Every error is answered (and a change's audited) in _failed, which logs what is
        # not a refusal: one bad call must not stop the daemon.
        try:
            done = self._handlers[req.method](req, client)
        except Exception as exc:  # noqa: BLE001
            return self._failed(req, spec, client, exc)
        return self._outcome(req, spec, client, done)

    async def _answer_later(self, req: Request, spec: CallSpec, client: _Client) -> None:
        """A threaded call, admitted already: its answer sent when its work is done."""
        handler = self._handlers[req.method]
        # Every error is answered (and a change's audited) in _failed, which logs what is
        # not a refusal: one bad call must not stop the daemon.
        try:
            done = await handler(req, client)
        except Exception as exc:  # noqa: BLE001
            client.send(self._failed(req, spec, client, exc))
            return
        client.send(self._outcome(req, spec, client, done))

    def _admit(self, req: Request, spec: CallSpec, client: _Client | None) -> bytes | None:
        """The one gate of every call: the error answer that refuses it (audited when it is
        a change), or None to go ahead. A change is refused on a read-only agent, a call
        whose queue or engine is missing is refused, and a change is not made when the audit
        log cannot take its record (fails closed: checked before, the line written after)."""
        target = _target_of(req)
        if not spec.read_only_ok and self.read_only:
            self._audit(req.method, target, "", "", "refused: read-only", client)
            return encode_error(
                req.id, READ_ONLY_ERROR, "this agent is read-only (daemon --read-only)"
            )
        missing = self._missing(spec)
        if missing is not None:
            why, message = missing
            if spec.changes:
                self._audit(req.method, target, "", "", f"refused: {why}", client)
            return encode_error(req.id, REFUSED, message)
        if not spec.changes:
            return None
        try:
            self.audit.check()
        except AuditUnavailable as exc:
            self._audit_broke(str(exc))
            log.warning("refused %s on %s: %s", req.method, target, exc)
            return encode_error(
                req.id, REFUSED, f"{req.method} refused, nothing was changed: {exc}"
            )
        return None

    def _missing(self, spec: CallSpec) -> tuple[str, str] | None:
        """What the call needs and this host lacks: (for the audit log, for the caller)."""
        if spec.needs == "queue" and self.queue is None:
            return "no request queue", (
                f"the request queue is unavailable: {self.queue_reason or '?'}"
            )
        if spec.needs == "docker":
            assert self.sampler is not None
            if self.sampler.containers is None or self.sampler.docker_reason is not None:
                why = f"no Docker engine: {self.sampler.docker_reason or 'not answering'}"
                return why, why
        return None

    def _outcome(self, req: Request, spec: CallSpec, client: _Client | None,
                 done: Any) -> bytes:  # fmt: skip
        """The answer to a call that went through, and the audit line of a change."""
        if not spec.changes:
            assert not isinstance(done, _Done)
            return encode_result(req.id, done)
        assert isinstance(done, _Done), f"{req.method}: a change's handler returns a _Done"
        target = done.target or _target_of(req)
        self._audit(req.method, target, done.before, done.after, "ok", client)
        return encode_result(req.id, done.result)

    def _failed(self, req: Request, spec: CallSpec, client: _Client | None,
                exc: Exception) -> bytes:  # fmt: skip
        """The error answer to a call whose handler raised, and the audit line of a change
        refused or failed on the way."""
        if isinstance(exc, _CallError):
            code = exc.code
        elif isinstance(exc, (NotFound, container_control.NotFound)):
            code = NOT_FOUND
        # A queue's error on a read (an unreadable log, a query the store fails) is the
        # agent's own failure, not a refusal of the caller's change.
        elif isinstance(exc, _REFUSALS if spec.changes else container_control.Refused):
            code = REFUSED
        else:
            log.exception("call %s failed", req.method, exc_info=exc)
            if spec.changes:
                self._audit(req.method, _target_of(req), "", "", f"error: {exc}", client)
            return encode_error(req.id, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        if spec.changes:
            self._audit(req.method, _target_of(req), "", "", f"refused: {exc}", client)
        return encode_error(req.id, code, str(exc))

    # ------------------------------------------------------------ handlers

    def _handshake(self, req: Request, client: _Client | None) -> Struct:
        hs: Handshake = req.params
        if client is not None:
            client.claimed = hs.operator
        if hs.protocol != PROTOCOL_VERSION:
            raise _CallError(
                VERSION_ERROR,
                f"{hs.client} speaks protocol {hs.protocol}, this agent ({__version__}) "
                f"speaks {PROTOCOL_VERSION}; install the same llmaos-tui version on both sides",
            )
        return HandshakeResult(protocol=PROTOCOL_VERSION, agent_version=__version__)

    def _ping(self, req: Request, client: _Client | None) -> Struct:
        return Pong(t=time.time())

    def _processes(self, req: Request, client: _Client | None) -> Struct:
        return ProcTable(t=time.time(), procs=list(self._fresh_table().values()))

    def _shutdown(self, req: Request, client: _Client | None) -> _Done:
        """A client's ``shutdown``: the daemon stops once this answer has gone out."""
        self.stop()
        return _Done(Empty(), "running", "stopping")

    def _queue(self) -> RequestQueue:
        assert self.queue is not None, "admitted only with a queue (needs='queue')"
        return self.queue

    def _list_requests(self, req: Request, client: _Client | None) -> Struct:
        q: RequestQuery = req.params
        reqs, total = self._queue().query(list(q.states), q.limit)
        return RequestList(requests=reqs, total=total)

    def _get_request(self, req: Request, client: _Client | None) -> Struct:
        return self._queue().get(req.params.id)

    def _request_log(self, req: Request, client: _Client | None) -> Struct:
        lq: LogQuery = req.params
        return self._queue().log(lq.id, lq.offset, lq.max_bytes)

    def _request_act(self, act: Callable[[RequestQueue, str], RequestInfo], *,
                     after: str = "") -> _Handler:  # fmt: skip
        """The handler of a change of one request by id (hold, release, top, cancel,
        withdraw): ``after`` for the audit line, when not the request's new state."""

        def handle(req: Request, client: _Client | None) -> _Done:
            ref: RequestRef = req.params
            q = self._queue()
            before = _describe(q.get(ref.id))
            info = act(q, ref.id)
            return _Done(info, before, after or _describe(info))

        return handle

    def _submit(self, req: Request, client: _Client | None) -> _Done:
        info = self._queue().submit(req.params, owner=_owner(client))
        return _Done(info, "", _describe(info))

    def _reprioritize(self, req: Request, client: _Client | None) -> _Done:
        rp: Reprioritize = req.params
        q = self._queue()
        before = _describe(q.get(rp.id))
        info, _ = q.reprioritize(rp.id, rp.priority)
        return _Done(info, before, _describe(info))

    def _protected(self) -> frozenset[int]:
        """Processes a client may not touch: the daemon and its clients' bridges."""
        return frozenset({os.getpid()} | {c.peer_pid for c in self.conns if c.peer_pid})

    def _renice(self, req: Request, client: _Client | None) -> _Done:
        rn: Renice = req.params
        ch = control.renice(rn.pid, rn.create_time, rn.nice, protected=self._protected())
        return _Done(ch, ch.before, ch.after)

    def _set_affinity(self, req: Request, client: _Client | None) -> _Done:
        sa: SetAffinity = req.params
        ch = control.set_affinity(sa.pid, sa.create_time, list(sa.cores),
                                  protected=self._protected())  # fmt: skip
        return _Done(ch, ch.before, ch.after)

    def _send_signal(self, req: Request, client: _Client | None) -> _Done:
        ss: SendSignal = req.params
        ch = control.send_signal(ss.pid, ss.create_time, ss.signal, protected=self._protected())
        return _Done(ch, ch.before, ch.after)

    def _engine(self) -> container_control.EngineControl:
        assert self.sampler is not None
        return container_control.EngineControl(self.sampler.docker_socket)

    async def _container_act(self, req: Request, client: _Client | None) -> _Done:
        """``containers.start/stop/restart``, in a thread; the new state shown soon after."""
        ref: ContainerRef = req.params
        verb = req.method.removeprefix("containers.")
        target, before, after = await asyncio.to_thread(
            self._engine().act, verb, ref.id, ref.timeout
        )
        # A fresh list, then a process pass that sends it (after this answer goes out).
        self._start_container_refresh().add_done_callback(self._force_process_pass)
        return _Done(Change(target=target, before=before, after=after), before, after, target)

    def _force_process_pass(self, _task: asyncio.Task[bool]) -> None:
        self._force_procs = True

    async def _container_logs(self, req: Request, client: _Client | None) -> Struct:
        q: ContainerLogQuery = req.params
        text, cut = await asyncio.to_thread(self._engine().logs, q.id, q.tail)
        return ContainerLog(id=q.id, data=text, truncated=cut)

    # ------------------------------------------------------------ requests

    def _dispatch_soon(self) -> None:
        """Start what now fits within a few ms, not at the next tick; a burst of submits
        is served first and then dispatched in one pass."""
        if self._dispatch_handle is None:
            self._dispatch_handle = asyncio.get_running_loop().call_later(
                DISPATCH_DELAY_S, self._dispatch_now
            )

    def _dispatch_now(self) -> None:
        self._dispatch_handle = None
        if self.read_only or not self._audit_works():
            return
        if self.queue is not None and not self._stop.is_set():
            try:
                self.queue.tick()
            except Exception:
                log.exception("request dispatch failed")

    def _audit(self, action: str, target: str, before: str, after: str, result: str,
               client: _Client | None) -> None:  # fmt: skip
        """A record that cannot refuse anything any more (a result, a refusal): logged when
        it cannot be written, and the queue stops starting requests until it can."""
        try:
            self._append(action, target, before, after, result, client)
        except AuditUnavailable as exc:
            self._audit_broke(str(exc))

    def _own_audit(self, action: str, target: str, before: str, after: str,
                   result: str) -> None:  # fmt: skip
        """A record of what the daemon did on its own (start, stop, dispatch, adoption)."""
        self._audit(action, target, before, after, result, None)

    def _append(self, action: str, target: str, before: str, after: str, result: str,
                client: _Client | None) -> None:  # fmt: skip
        host = self.hello.host.hostname if self.hello else ""
        if client is None:  # the daemon itself
            operator, claimed, uid = self._me, "llmaos-agent daemon", _getuid()
            pid: int | None = os.getpid()
        else:
            # The authenticated identity where the socket tells it (SO_PEERCRED); the
            # console's claim beside it, for what it is worth.
            operator = client.user or "unknown"
            claimed, uid, pid = client.claimed, client.uid, client.peer_pid
        self.audit.append(action=action, target=target, before=before, after=after,
                          result=result, operator=operator, host=host, claimed=claimed,
                          uid=uid, peer_pid=pid)  # fmt: skip

    def _audit_broke(self, why: str) -> None:
        if self._audit_error is None:
            log.error("%s: changes are refused and no request starts until it can be", why)
        self._audit_error = why

    def _audit_works(self) -> bool:
        """Whether the audit log can be written; after a failure, one try per call (a
        line saying it works again), so the queue resumes once the disk has room."""
        if self._audit_error is None:
            return True
        try:
            self._append("audit.resumed", str(self.audit.path), "", "",
                         f"ok after: {self._audit_error}", None)  # fmt: skip
        except AuditUnavailable as exc:
            self._audit_error = str(exc)
            return False
        log.info("the audit log %s can be written again", self.audit.path)
        self._audit_error = None
        return True

    def _requests_changed(self, changed: list[RequestInfo], gone: list[str]) -> None:
        # The daemon's own acts on requests, seen as state transitions: a start (dispatch,
        # by priority with aging) and an end (reaped). Clients' changes are audited where
        # they are made.
        states = self._req_states
        for info in changed:
            was = states.get(info.id)
            states[info.id] = info.state
            if was == info.state:
                continue
            if info.state == "running":
                self._own_audit("requests.dispatch", f"request {info.id}", was or "",
                                _describe(info) + _placement(info), "ok")  # fmt: skip
            elif was == "running":
                code = "" if info.exit_code is None else f" exit {info.exit_code}"
                self._own_audit("requests.end", f"request {info.id}", "running",
                                f"{info.state}{code}", info.reason or "ok")  # fmt: skip
        for rid in gone:
            states.pop(rid, None)
        self._broadcast_changes(
            "requests.changed", RequestDelta, changed, gone, MAX_REQUESTS_PER_MESSAGE
        )

    def _broadcast_changes(
        self, method: str, delta: Any, changed: list[Any], gone: list[str], per_message: int
    ) -> None:
        """Send changes to every client as ``method`` notifications of bounded size."""
        for i in range(0, max(len(changed), len(gone)), per_message):
            d = delta(full=False, upsert=changed[i : i + per_message],
                      gone=gone[i : i + per_message])  # fmt: skip
            line = encode_notification(method, d)
            for c in list(self.clients):
                self._send(c, line)

    def _fresh_table(self) -> dict[int, Proc]:
        if not self.table:  # nobody is watching, so the table is not kept up to date
            assert self.sampler is not None
            return self.sampler.procs.snapshot()
        return self.table

    # ---------------------------------------------------------------- lock

    def _take_lock(self) -> None:
        # Held for the daemon's life; opened without following a link, as every file of ours.
        f = os.fdopen(open_file(self.paths.lock, os.O_RDWR | os.O_CREAT), "r+b")
        if not try_lock(f.fileno()):
            f.close()
            raise AlreadyRunning(f"another llmaos-agent daemon holds {self.paths.lock}")
        f.truncate(0)
        f.write(f"{os.getpid()}\n".encode())
        f.flush()
        self._lock_fd = f

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            self._lock_fd.close()
            self._lock_fd = None


def _describe(info: RequestInfo) -> str:
    return f"{info.state} priority {info.priority}" + (
        f" nice {info.nice}" if info.nice is not None and info.state == "running" else ""
    )


def _target_of(req: Request) -> str:
    p = req.params
    if isinstance(p, (Renice, SetAffinity, SendSignal)):
        return f"pid {p.pid}"
    if isinstance(p, (RequestRef, Reprioritize)):
        return f"request {p.id}"
    if isinstance(p, RequestSpec):
        return f"request {p.id or '(new)'}: {' '.join(p.argv)[:200]}"
    if isinstance(p, ContainerRef):
        return f"container {p.id}"
    if isinstance(p, Empty):  # the one change without params, shutdown, acts on the daemon
        return "daemon"
    return ""


def _placement(info: RequestInfo) -> str:
    where = f" on cores {','.join(map(str, info.cores))}" if info.cores else ""
    if info.gpu_uuids:
        where += f" gpus {','.join(info.gpu_uuids)}"
    return where


def _owner(client: _Client | None) -> str:
    """Who a submitted request belongs to: the authenticated user, and the console's claim
    when it says more."""
    if client is None:
        return "unknown"
    if client.claimed and client.claimed != client.user:
        return f"{client.user or 'unknown'} ({client.claimed})"[:256]
    return client.user or client.claimed or "unknown"


def _getuid() -> int | None:
    return os.getuid() if hasattr(os, "getuid") else None


def _user_name(uid: int | None) -> str:
    """The user name of ``uid`` (its number when the passwd database has none)."""
    if uid is None:
        return ""
    try:
        import pwd  # noqa: PLC0415 - built in, POSIX only

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _peer_cred(writer: asyncio.StreamWriter) -> tuple[int | None, int | None]:
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


async def _lines(reader: asyncio.StreamReader, limit: int) -> AsyncIterator[bytes | None]:
    """The lines a client sends; None for a line over ``limit`` bytes, which is skipped.

    Unlike ``StreamReader.readline`` this skips the whole of an overlong line, so its
    tail is not taken for the next message and the connection stays usable.
    """
    split = _LineSplitter(limit)
    while True:
        try:
            chunk = await reader.read(1 << 16)
        except ConnectionError:
            return
        for line in split.feed(chunk) if chunk else split.end():
            yield line
        if not chunk:
            return


class _LineSplitter:
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
