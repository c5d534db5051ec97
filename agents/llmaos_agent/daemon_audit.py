"""The daemon's audit path: one line per change a client made or refused, and per act of the
daemon's own (start, stop, dispatch, a request's end, adoption at start).

Fails closed: a change is made only once the log was checked to take its line (the call
path, :mod:`llmaos_agent.daemon_calls`, asks :meth:`AuditLog.check` first); when a line
cannot be written the failure is remembered, changes are refused and the queue starts
nothing until :meth:`AuditMixin._audit_works` writes one again.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from llmaos_agent.audit import AuditLog, AuditUnavailable
from llmaos_agent.daemon_clients import Client, getuid
from llmaos_agent.protocol import Hello, RequestInfo

if TYPE_CHECKING:
    from llmaos_agent.requests.queue import RequestQueue

log = logging.getLogger("llmaos_agent.daemon")


class AuditMixin:
    """The audit methods of :class:`llmaos_agent.daemon.Daemon`, with what they read of it."""

    audit: AuditLog
    hello: Hello | None
    queue: RequestQueue | None
    _audit_error: str | None
    _me: str
    _req_states: dict[str, str]

    def _audit_adopted(self) -> None:
        """Requests found running at start (their supervisors lived on) are this daemon's
        now: say so, and remember every request's state to audit its next transition."""
        if self.queue is None:
            return
        for info in self.queue.snapshot():
            self._req_states[info.id] = info.state
            if info.state == "running":
                self._own_audit("requests.adopt", f"request {info.id}", "", describe(info),
                                "ok")  # fmt: skip

    def _audit(self, action: str, target: str, before: str, after: str, result: str,
               client: Client | None) -> None:  # fmt: skip
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
                client: Client | None) -> None:  # fmt: skip
        host = self.hello.host.hostname if self.hello else ""
        if client is None:  # the daemon itself
            operator, claimed, uid = self._me, "llmaos-agent daemon", getuid()
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

    def _audit_transitions(self, changed: list[RequestInfo], gone: list[str]) -> None:
        """The daemon's own acts on requests, seen as state transitions: a start (dispatch,
        by priority with aging) and an end (reaped). Clients' changes are audited where
        they are made."""
        states = self._req_states
        for info in changed:
            was = states.get(info.id)
            states[info.id] = info.state
            if was == info.state:
                continue
            if info.state == "running":
                self._own_audit("requests.dispatch", f"request {info.id}", was or "",
                                describe(info) + placement(info), "ok")  # fmt: skip
            elif was == "running":
                code = "" if info.exit_code is None else f" exit {info.exit_code}"
                self._own_audit("requests.end", f"request {info.id}", "running",
                                f"{info.state}{code}", info.reason or "ok")  # fmt: skip
        for rid in gone:
            states.pop(rid, None)


def describe(info: RequestInfo) -> str:
    return f"{info.state} priority {info.priority}" + (
        f" nice {info.nice}" if info.nice is not None and info.state == "running" else ""
    )


def placement(info: RequestInfo) -> str:
    where = f" on cores {','.join(map(str, info.cores))}" if info.cores else ""
    if info.gpu_uuids:
        where += f" gpus {','.join(info.gpu_uuids)}"
    return where
