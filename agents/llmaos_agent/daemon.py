"""The per-user host daemon: samples at 1 Hz, keeps an hour of history, serves clients.

One daemon per user per host (a lock file makes sure). Cores, memory and GPUs
are sampled every ``interval``; the process table, the expensive part, every
``proc_interval`` and only while a client is attached that wants it (``procs.watch``; on
for a new client) or the containers' load needs it. Each client gets the ``hello``, the
history ring, then live ``sample`` notifications, with the process table as changes (a full
table first, and again when it turns processes back on) while it has processes on.

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

Where things are: this module holds the sampling and process pass, the containers, the
history and the serving of clients; :mod:`llmaos_agent.daemon_clients` a client connection,
its bounds and line splitting; :mod:`llmaos_agent.daemon_calls` the call gate and handlers
(dispatched by :data:`llmaos_agent.protocol.CALL_SPECS`); :mod:`llmaos_agent.daemon_audit`
the audit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import time
from collections import deque
from typing import IO, Any

from llmaos_agent import __version__, endpoint
from llmaos_agent.audit import AuditLog
from llmaos_agent.collect.sampler import Sampler
from llmaos_agent.daemon_calls import CallsMixin
from llmaos_agent.daemon_clients import (
    MAX_CLIENTS,
    MAX_TOTAL_BUFFER,
    PAUSE_BYTES,
    STALL_S,
    Client,
    read_lines,
    user_name,
)
from llmaos_agent.paths import AgentPaths, open_file, try_lock
from llmaos_agent.procdelta import diff, full
from llmaos_agent.protocol import (
    HISTORY_CHUNK_BYTES,
    MAX_CONTAINERS_PER_MESSAGE,
    MAX_LINE_BYTES,
    MAX_REQUESTS_PER_MESSAGE,
    PROTOCOL_VERSION,
    REFUSED,
    Container,
    ContainerDelta,
    Hello,
    Proc,
    RequestDelta,
    RequestInfo,
    Sample,
    encode,
    encode_error,
    encode_history,
    encode_notification,
    replace,
)
from llmaos_agent.requests.queue import RequestQueue
from llmaos_agent.requests.store import StoreUnavailable

log = logging.getLogger("llmaos_agent.daemon")

CONTAINER_INTERVAL = 3.0
"""Seconds between the engine's container lists while a client is attached."""

DISPATCH_DELAY_S = 0.02
"""After a request change, how long to wait for more before starting what fits."""


class AlreadyRunning(RuntimeError):
    pass


class Daemon(CallsMixin):
    """The daemon: sampling, history, clients; its calls and audit are its mixins'."""

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
        self.clients: set[Client] = set()  # those that get the live stream
        self.conns: set[Client] = set()  # every client served (greeting ones too)
        self.table: dict[int, Proc] = {}
        self.last_sample: Sample | None = None  # the GPUs' processes, for proc.detail
        self._force_procs = False
        self._next_procs = 0.0
        self._stop = asyncio.Event()
        # Set with _stop, or when the first client comes to a daemon that holds no process
        # table: it ticks at once (a console's first screen needs the table, not in 1 s).
        self._wake = asyncio.Event()
        self._early_at = float("-inf")  # the loop's clock at the last early tick
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
        self._me = user_name(os.getuid()) if hasattr(os, "getuid") else ""
        self.queue_reason: str | None = None  # why there is no request queue
        self._req_states: dict[str, str] = {}  # each request's state, as last heard
        self._dispatch_handle: asyncio.TimerHandle | None = None
        self._appended = 0  # samples ever put in the history ring
        self.containers: dict[str, Container] = {}  # as the attached clients last heard
        self._containers_at = -CONTAINER_INTERVAL  # monotonic time of the last list
        self._containers_task: asyncio.Task[bool] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # container calls in flight
        self._handlers = self._handler_table()

    def _early_tick_allowed(self) -> bool:
        """At most one early tick an interval: a client that connects and leaves in a loop
        must not speed the sampling up more than twice (nor fill the history ring)."""
        now = asyncio.get_running_loop().time()
        if now - self._early_at < self.interval:
            return False
        self._early_at = now
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

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

    async def _sample_loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except Exception:  # one bad pass must not stop the sampling, nor the daemon
                log.exception("a sampling pass failed")
            deadline += self.interval
            now = loop.time()
            if deadline < now:  # we fell behind (suspend, overload): skip, do not burst
                deadline = now + self.interval
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), deadline - now)
                deadline = loop.time()  # woken: tick now, and the cadence goes on from it

    def tick(self) -> None:
        assert self.sampler is not None
        sample = self.sampler.sample()
        self.history.append(encode(sample))
        self._appended += 1
        self._police_clients()
        if self.queue is not None:
            self._tick_queue(self.queue, sample)
        self.last_sample = sample
        if not self.clients:
            self._drop_table()  # the last client left
            self.containers = {}
            return
        if time.monotonic() - self._containers_at >= CONTAINER_INTERVAL:
            self._start_container_refresh()
        now = time.monotonic()
        wanted = self._table_wanted()
        if not wanted:
            self._drop_table()  # not kept stale: ``processes`` then reads a fresh one
        # Half a tick of slack: ticks come with jitter, and without it a pass due at the
        # very tick would often slip to the next one (every 3 s instead of 2).
        if self._force_procs or now >= self._next_procs - self.interval / 2:
            self._force_procs = False
            self._next_procs = now + self.proc_interval
            if wanted:
                self._process_pass(sample)
                return
            # No table read, but the containers' changes go out at the same cadence
            # (none runs, so none has a load to sum).
            try:
                self._send_containers({})
            except Exception:  # one bad pass must not stop the sampling
                log.exception("container update failed")
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

    def _table_wanted(self) -> bool:
        """Whether the process table is to be read at all: a client wants it with its
        samples, or the containers' load is summed from it (while the engine lists one that
        runs). Nothing else in the agent
        reads it: the request queue finds and renices its processes through the OS itself
        (:mod:`llmaos_agent.system`), and ``processes`` reads a fresh table when none is
        kept."""
        assert self.sampler is not None
        return any(c.procs for c in self.clients) or self.sampler.containers_running()

    def _drop_table(self) -> None:
        """Stop keeping the process table: no stat files held while none reads it."""
        if self.table:
            assert self.sampler is not None
            self.sampler.procs.close()
        self.table = {}

    def _process_pass(self, sample: Sample) -> None:
        """A sample with the process table: as changes, or whole to a client that is new
        (or has just turned its processes on); without it to a client that has them off."""
        assert self.sampler is not None
        table = self.sampler.processes(sample)
        # Before the sample, so a console that sees the pass's processes has its
        # containers' load too.
        try:
            self._send_containers(table)
        except Exception:  # one bad pass must not stop the sampling
            log.exception("container update failed")
        old, self.table = self.table, table
        # Each line encoded once, and only when some client takes it.
        plain: bytes | None = None
        whole: bytes | None = None
        changes: bytes | None = None
        for c in list(self.clients):
            if not c.procs:
                if plain is None:
                    plain = encode_notification("sample", sample)
                self._send(c, plain)
            elif c.needs_full:
                if whole is None:
                    whole = encode_notification("sample", replace(sample, procs=full(table)))
                c.needs_full = False
                self._send(c, whole)
            else:
                if changes is None:
                    delta = diff(old, table)
                    changes = encode_notification("sample", replace(sample, procs=delta))
                self._send(c, changes)

    def watch_procs(self, client: Client, on: bool) -> None:
        """``procs.watch``: ``client``'s samples with the process table or without. Turned
        on, its next process pass (at the next tick) is a whole table: it holds none that a
        change could apply to. Off, it holds none either from then on."""
        client.needs_full = True
        was, client.procs = client.procs, on
        if on and not was:
            self._force_procs = True
            if not self.table and self._early_tick_allowed():
                self._wake.set()

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

    def _send_all_containers(self, client: Client) -> None:
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

    def _send_container_list(self, client: Client) -> None:
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

    def _send(self, c: Client, data: bytes) -> None:
        if not c.send(data):
            self.clients.discard(c)

    def make_room(self, extra: int, sender: Client) -> bool:
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

    async def _drained(self, client: Client) -> bool:
        """Wait while ``client`` has PAUSE_BYTES unread (reading nothing from it meanwhile);
        False when it has gone (dropped by the bounds above, or closed)."""
        if client.backlog() > PAUSE_BYTES:
            try:
                await client.writer.drain()
            except (ConnectionError, RuntimeError):
                return False
        return not client.gone

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self.hello is not None
        client = Client(writer, self)
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
            if not self.table and self._early_tick_allowed():
                self._wake.set()
            await self._read_requests(reader, client)
        finally:
            self.conns.discard(client)
            self.clients.discard(client)
            for task in list(client.tasks):
                task.cancel()  # only reads are cancelled: changes are not put in client.tasks
            writer.close()

    async def _refuse(self, client: Client, why: str) -> None:
        client.writer.write(encode_error(None, REFUSED, why))
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(client.writer.drain(), 5.0)
        client.writer.close()

    async def _greet(self, client: Client) -> bool:
        """hello, the history ring and the request list; False when the client went."""
        assert self.hello is not None
        client.send(encode_notification("hello", self.hello))
        return await self._send_history(client) and self._send_requests(client)

    async def _send_history(self, client: Client) -> bool:
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

    def _send_requests(self, client: Client) -> bool:
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

    async def _read_requests(self, reader: asyncio.StreamReader, client: Client) -> None:
        async for line in read_lines(reader, MAX_LINE_BYTES):
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

    def _requests_changed(self, changed: list[RequestInfo], gone: list[str]) -> None:
        self._audit_transitions(changed, gone)
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
