"""The daemon's call path: one gate for every call and each call's handler.

Every call goes one way: CALL_SPECS (protocol.py) says what it is, _admit refuses
what may not run (read-only, a missing queue or engine, an audit log that cannot take
the record), the method's handler does the work, and _outcome answers and audits.
Handlers raise to refuse; they never answer, refuse read-only or audit themselves.

The table of calls itself, which change state and which a read-only agent serves, is
:data:`llmaos_agent.protocol.CALL_SPECS`, next to the messages.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from llmaos_agent import __version__, container_control, control, proc_detail
from llmaos_agent.audit import AuditUnavailable
from llmaos_agent.daemon_audit import AuditMixin, describe
from llmaos_agent.daemon_clients import Client
from llmaos_agent.protocol import (
    CALL_SPECS,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_LINE_BYTES,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PROTOCOL_VERSION,
    READ_ONLY_ERROR,
    REFUSED,
    VERSION_ERROR,
    BadParams,
    CallSpec,
    Change,
    ContainerLog,
    ContainerLogQuery,
    ContainerRef,
    Empty,
    Handshake,
    HandshakeResult,
    LogQuery,
    Pong,
    Proc,
    ProcDetailQuery,
    ProcTable,
    ProcWatch,
    ProtocolError,
    Renice,
    Reprioritize,
    Request,
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
    encode_error,
    encode_result,
)
from llmaos_agent.requests.queue import NotFound, QueueError, RequestQueue
from llmaos_agent.system import Denied, Gone, host_os

if TYPE_CHECKING:
    from llmaos_agent.collect.sampler import Sampler

log = logging.getLogger("llmaos_agent.daemon")


class Done(NamedTuple):
    """What a change's handler did: the call's result and the audit line's before/after."""

    result: Struct
    before: str
    after: str
    target: str = ""  # what the change turned out to touch, when it says more than the call


class CallError(Exception):
    """Raised by a handler to answer its call with ``code`` (not audited as a refusal)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


Handler = Callable[[Request, "Client | None"], Any]
"""A call's handler: returns the result (a read) or a :class:`Done` (a change); a threaded
call's handler is a coroutine function returning the same. It raises to refuse."""

REFUSALS: Final = (control.Refused, QueueError, container_control.Refused)
"""What a change's handler raises to refuse it (nothing changed): answered REFUSED."""


class CallsMixin(AuditMixin):
    """The call methods of :class:`llmaos_agent.daemon.Daemon`, with what they read of it."""

    read_only: bool
    queue_reason: str | None
    sampler: Sampler | None
    conns: set[Client]
    _handlers: dict[str, Handler]
    _tasks: set[asyncio.Task[None]]
    _force_procs: bool
    last_sample: Sample | None

    # The daemon's own, called from here.
    def stop(self) -> None:
        raise NotImplementedError

    def _dispatch_soon(self) -> None:
        raise NotImplementedError

    def _start_container_refresh(self) -> asyncio.Task[bool]:
        raise NotImplementedError

    def _fresh_table(self) -> dict[int, Proc]:
        raise NotImplementedError

    def watch_procs(self, client: Client, on: bool) -> None:
        raise NotImplementedError

    def _handler_table(self) -> dict[str, Handler]:
        """Each call's handler, registered once; checked against the protocol's table so a
        call cannot be declared without a handler, nor a thread's work run inline."""
        table: dict[str, Handler] = {
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
            "procs.watch": self._watch_procs,
            "proc.detail": self._proc_detail,
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

    def _handle_line(self, line: bytes | None, client: Client) -> None:
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

    def _decode(self, line: bytes | None, client: Client) -> Request | None:
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

    def _answer(self, req: Request, client: Client | None = None) -> bytes:
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

    async def _answer_later(self, req: Request, spec: CallSpec, client: Client) -> None:
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

    def _admit(self, req: Request, spec: CallSpec, client: Client | None) -> bytes | None:
        """The one gate of every call: the error answer that refuses it (audited when it is
        a change), or None to go ahead. A change is refused on a read-only agent, a call
        whose queue or engine is missing is refused, and a change is not made when the audit
        log cannot take its record (fails closed: checked before, the line written after)."""
        target = target_of(req)
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

    def _outcome(self, req: Request, spec: CallSpec, client: Client | None,
                 done: Any) -> bytes:  # fmt: skip
        """The answer to a call that went through, and the audit line of a change."""
        if not spec.changes:
            assert not isinstance(done, Done)
            return encode_result(req.id, done)
        assert isinstance(done, Done), f"{req.method}: a change's handler returns a Done"
        target = done.target or target_of(req)
        self._audit(req.method, target, done.before, done.after, "ok", client)
        return encode_result(req.id, done.result)

    def _failed(self, req: Request, spec: CallSpec, client: Client | None,
                exc: Exception) -> bytes:  # fmt: skip
        """The error answer to a call whose handler raised, and the audit line of a change
        refused or failed on the way."""
        if isinstance(exc, CallError):
            code = exc.code
        elif isinstance(exc, (NotFound, container_control.NotFound)):
            code = NOT_FOUND
        # A queue's error on a read (an unreadable log, a query the store fails) is the
        # agent's own failure, not a refusal of the caller's change.
        elif isinstance(exc, REFUSALS if spec.changes else container_control.Refused):
            code = REFUSED
        else:
            log.exception("call %s failed", req.method, exc_info=exc)
            if spec.changes:
                self._audit(req.method, target_of(req), "", "", f"error: {exc}", client)
            return encode_error(req.id, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        if spec.changes:
            self._audit(req.method, target_of(req), "", "", f"refused: {exc}", client)
        return encode_error(req.id, code, str(exc))

    # ------------------------------------------------------------ handlers

    def _handshake(self, req: Request, client: Client | None) -> Struct:
        hs: Handshake = req.params
        if client is not None:
            client.claimed = hs.operator
        if hs.protocol != PROTOCOL_VERSION:
            raise CallError(
                VERSION_ERROR,
                f"{hs.client} speaks protocol {hs.protocol}, this agent ({__version__}) "
                f"speaks {PROTOCOL_VERSION}; install the same llmaos-tui version on both sides",
            )
        return HandshakeResult(protocol=PROTOCOL_VERSION, agent_version=__version__)

    def _ping(self, req: Request, client: Client | None) -> Struct:
        return Pong(t=time.time())

    def _processes(self, req: Request, client: Client | None) -> Struct:
        return ProcTable(t=time.time(), procs=list(self._fresh_table().values()))

    def _watch_procs(self, req: Request, client: Client | None) -> Struct:
        w: ProcWatch = req.params
        if client is not None:
            self.watch_procs(client, w.on)
        return ProcWatch(on=w.on)

    def _proc_detail(self, req: Request, client: Client | None) -> Struct:
        """``proc.detail``: a gone pid (or one another process has taken since, when the
        call gives the create time it saw) is NOT_FOUND in the words process control uses;
        what the OS will not show of another user's process is None with its reason."""
        q: ProcDetailQuery = req.params
        try:
            info = host_os().detail(q.pid, q.create_time)
        except Gone:
            raise CallError(NOT_FOUND, f"pid {q.pid} is gone") from None
        except Denied:
            raise CallError(REFUSED, f"pid {q.pid}: access denied") from None
        except ValueError as exc:
            raise CallError(
                NOT_FOUND, f"pid {q.pid} is another process now ({exc}); the one you chose is gone"
            ) from None
        gpus = self.last_sample.gpus if self.last_sample is not None else []
        return proc_detail.to_wire(info, gpus)

    def _shutdown(self, req: Request, client: Client | None) -> Done:
        """A client's ``shutdown``: the daemon stops once this answer has gone out."""
        self.stop()
        return Done(Empty(), "running", "stopping")

    def _queue(self) -> RequestQueue:
        assert self.queue is not None, "admitted only with a queue (needs='queue')"
        return self.queue

    def _list_requests(self, req: Request, client: Client | None) -> Struct:
        q: RequestQuery = req.params
        reqs, total = self._queue().query(list(q.states), q.limit)
        return RequestList(requests=reqs, total=total)

    def _get_request(self, req: Request, client: Client | None) -> Struct:
        return self._queue().get(req.params.id)

    def _request_log(self, req: Request, client: Client | None) -> Struct:
        lq: LogQuery = req.params
        return self._queue().log(lq.id, lq.offset, lq.max_bytes)

    def _request_act(self, act: Callable[[RequestQueue, str], RequestInfo], *,
                     after: str = "") -> Handler:  # fmt: skip
        """The handler of a change of one request by id (hold, release, top, cancel,
        withdraw): ``after`` for the audit line, when not the request's new state."""

        def handle(req: Request, client: Client | None) -> Done:
            ref: RequestRef = req.params
            q = self._queue()
            before = describe(q.get(ref.id))
            info = act(q, ref.id)
            return Done(info, before, after or describe(info))

        return handle

    def _submit(self, req: Request, client: Client | None) -> Done:
        info = self._queue().submit(req.params, owner=owner(client))
        return Done(info, "", describe(info))

    def _reprioritize(self, req: Request, client: Client | None) -> Done:
        rp: Reprioritize = req.params
        q = self._queue()
        before = describe(q.get(rp.id))
        info, _ = q.reprioritize(rp.id, rp.priority)
        return Done(info, before, describe(info))

    def _protected(self) -> frozenset[int]:
        """Processes a client may not touch: the daemon and its clients' bridges."""
        return frozenset({os.getpid()} | {c.peer_pid for c in self.conns if c.peer_pid})

    def _renice(self, req: Request, client: Client | None) -> Done:
        rn: Renice = req.params
        ch = control.renice(rn.pid, rn.create_time, rn.nice, protected=self._protected())
        return Done(ch, ch.before, ch.after)

    def _set_affinity(self, req: Request, client: Client | None) -> Done:
        sa: SetAffinity = req.params
        ch = control.set_affinity(sa.pid, sa.create_time, list(sa.cores),
                                  protected=self._protected())  # fmt: skip
        return Done(ch, ch.before, ch.after)

    def _send_signal(self, req: Request, client: Client | None) -> Done:
        ss: SendSignal = req.params
        ch = control.send_signal(ss.pid, ss.create_time, ss.signal, protected=self._protected())
        return Done(ch, ch.before, ch.after)

    def _engine(self) -> container_control.EngineControl:
        assert self.sampler is not None
        return container_control.EngineControl(self.sampler.docker_socket)

    async def _container_act(self, req: Request, client: Client | None) -> Done:
        """``containers.start/stop/restart``, in a thread; the new state shown soon after."""
        ref: ContainerRef = req.params
        verb = req.method.removeprefix("containers.")
        target, before, after = await asyncio.to_thread(
            self._engine().act, verb, ref.id, ref.timeout
        )
        # A fresh list, then a process pass that sends it (after this answer goes out).
        self._start_container_refresh().add_done_callback(self._force_process_pass)
        return Done(Change(target=target, before=before, after=after), before, after, target)

    def _force_process_pass(self, _task: asyncio.Task[bool]) -> None:
        self._force_procs = True

    async def _container_logs(self, req: Request, client: Client | None) -> Struct:
        q: ContainerLogQuery = req.params
        text, cut = await asyncio.to_thread(self._engine().logs, q.id, q.tail)
        return ContainerLog(id=q.id, data=text, truncated=cut)


def target_of(req: Request) -> str:
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


def owner(client: Client | None) -> str:
    """Who a submitted request belongs to: the authenticated user, and the console's claim
    when it says more."""
    if client is None:
        return "unknown"
    if client.claimed and client.claimed != client.user:
        return f"{client.user or 'unknown'} ({client.claimed})"[:256]
    return client.user or client.claimed or "unknown"
