"""Changes made on a host's agent (requests, renice, affinity, signals), audited here too.

The agent validates, acts and writes its own audit line; the console refuses
everything in read-only mode before anything is sent, and writes a line to its
own audit log for every change it asked for, with the agent's answer as the
result, so both ends have the record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from msgspec import Struct

from llmaos_agent.protocol import CHANGES, Change, RequestInfo
from llmaos_tui.fleet.link import LinkDown
from llmaos_tui.fleet.session import CallError
from llmaos_tui.ops.audit import AuditLog

Caller = Callable[[str, Struct], Awaitable[Any]]


class ReadOnlyConsole(Exception):
    """The console runs with --read-only: no change is sent."""


def describe(info: RequestInfo) -> str:
    nice = f" nice {info.nice}" if info.state == "running" and info.nice is not None else ""
    return f"{info.state} priority {info.priority}{nice}"


async def change(
    call: Caller,
    method: str,
    params: Struct,
    *,
    host: str,
    target: str,
    audit: AuditLog,
    read_only: bool,
    before: str = "",
) -> Any:
    """Send one change; raise ReadOnlyConsole, CallError (refused) or LinkDown."""
    if method not in CHANGES:
        raise ValueError(f"{method!r} is not a change")
    if read_only:
        audit.append(action=method, host=host, target=target, before=before,
                     result="refused: read-only console")  # fmt: skip
        raise ReadOnlyConsole("read-only: this console makes no changes (--read-only)")
    audit.check()  # fails closed: a change this console cannot record is not sent
    try:
        result = await call(method, params)
    except CallError as exc:
        audit.append(action=method, host=host, target=target, before=before,
                     result=f"refused: {exc}")  # fmt: skip
        raise
    except LinkDown as exc:
        audit.append(action=method, host=host, target=target, before=before,
                     result=f"failed: {exc}")  # fmt: skip
        raise
    after = ""
    if isinstance(result, Change):
        target, before, after = f"{target} {result.target}".strip(), result.before, result.after
    elif isinstance(result, RequestInfo):
        after = "withdrawn" if method == "requests.withdraw" else describe(result)
        target = f"request {result.id}"
    audit.append(action=method, host=host, target=target, before=before, after=after,
                 result="ok")  # fmt: skip
    return result
