"""A Slurm change through the console's change path (:func:`llmaos_tui.ops.changes.change`:
refused and audited in read-only mode, the audit checked first, Slurm's refusal audited
as ``refused``, an unreachable host as ``failed``), plus the one outcome that path has no
word for: a command that timed out (:class:`~llmaos_tui.slurm.client.SlurmTimedOut`).

slurmctld may have acted on a command whose answer never came, so that is audited as
``unknown: timed out ...`` (``ok: ... not read back`` when Slurm did answer the change and
only reading the job back timed out), never ``refused``; the exception is raised on with
its message saying the command may have acted, for the screen or the CLI to show.
``change`` lets a TimeoutError through without a line of its own (it audits only
:class:`~llmaos_tui.fleet.session.CallError` and :class:`~llmaos_tui.fleet.link.LinkDown`),
so each outcome gets exactly one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from llmaos_agent.protocol import RequestInfo
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.changes import change
from llmaos_tui.slurm.client import PrioResult, SlurmClient, SlurmTimedOut, outcome_word
from llmaos_tui.slurm.jobs import SlurmJob
from llmaos_tui.slurm.runner import LinkLost, Result

T = TypeVar("T", SlurmJob, PrioResult)


class SlurmCall(msgspec.Struct, frozen=True):
    """What a Slurm change was asked (the change path takes a Struct)."""

    cluster: str
    target: str


async def slurm_change(
    c: SlurmClient,
    method: str,
    target: str,
    act: Callable[[], Awaitable[Any]],
    *,
    audit: AuditLog,
    read_only: bool,
    before: str = "",
) -> Any:
    """``act()`` (a :class:`SlurmClient` action returning a job or a :class:`PrioResult`)
    as one audited change on the cluster's host; its result. Raises what ``change``
    raises, and :class:`SlurmTimedOut` after auditing it as unknown."""
    done: dict[str, Any] = {}
    timed_out: list[SlurmTimedOut] = []

    async def call(_method: str, _params: msgspec.Struct) -> RequestInfo:
        try:
            result = await act()
        except SlurmTimedOut as exc:
            timed_out.append(exc)
            raise
        except LinkLost as exc:  # the command had started: it may have acted
            lost = SlurmTimedOut(Result(None, "", str(exc)), acted=None)
            timed_out.append(lost)
            raise lost from exc
        done["result"] = result
        job: SlurmJob = result.job if isinstance(result, PrioResult) else result
        return job.as_request()

    host = c.runner.where
    try:
        await change(
            call, method, SlurmCall(cluster=c.name, target=target), host=host, target=target,
            audit=audit, read_only=read_only, before=before,
        )  # fmt: skip
    except SlurmTimedOut as exc:
        if not timed_out or timed_out[0] is not exc:
            raise  # not the action's own (cannot happen: change makes no Slurm call)
        word = outcome_word(exc)
        audit.append(action=method, host=host, target=target, before=before,
                     result=f"{word}: {exc}", timed_out=True)  # fmt: skip
        raise
    return done["result"]
