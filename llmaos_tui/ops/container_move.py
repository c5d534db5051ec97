"""Moving a container from one host's engine to another's, journaled so it cannot end halfway.

The steps, each written to the :class:`~llmaos_tui.ops.journal.MoveJournal` before it runs:

``inspect``  read the source container, both engines and the target's containers;
``precheck`` refuse what cannot work (:meth:`MoveEngine.precheck`), before anything changes;
``commit``   (``commit=True``) the container's filesystem changes into an image;
``image``    stream the image source -> target when the target lacks it: the source's
             ``save`` is piped chunk by chunk into the target's ``load``, so the console
             never holds more than one chunk, and the service still runs meanwhile;
``create``   the named volumes, then the container, created and not started, with the
             source's configuration (env, command, entrypoint, labels, ports, volumes,
             restart policy, device requests, limits...), while the source still serves;
``stop``     stop the source (bounded timeout): from here the service is down;
``copy``     each volume's data, ``get_archive`` from the stopped source piped into
             ``put_archive`` on the created target;
``start``    the target;
``verify``   running for ``settle`` seconds without restarting, healthy where it has a
             health check;
``finish``   remove the source (and its named volumes, now copied), or with
             ``keep_source`` keep it stopped, renamed ``NAME.moved-ID`` and with restart
             policy ``no`` so no engine restart brings a second copy up.

A move ends in one of two states, never neither: moved (target running and verified), or
rolled back (source as it was, the target's leftovers removed). A failure before ``finish``
rolls back; a console that died mid-move is finished by :func:`recover_all` when it starts
again: forward when the target had been started and verifies, otherwise back. Engines
that cannot be reached leave the entry unfinished, to be resolved on the next try; the
source is always restored first.

The docker SDK is synchronous: run :meth:`MoveEngine.move` off the event loop's thread
(``asyncio.to_thread``), as :mod:`llmaos_tui.ops.docker_forward` explains.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import docker

from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.docker_forward import Engine
from llmaos_tui.ops.journal import MoveJournal
from llmaos_tui.ops.move_model import (
    AUDIT_ACTION,
    COMMIT_REPO,
    STEPS,
    MoveError,
    MovePlan,
    MoveResult,
    Progress,
    ProgressFn,
    Refusal,
    _reason,
    describe,
)
from llmaos_tui.ops.move_precheck import PrecheckMixin
from llmaos_tui.ops.move_recovery import RecoveryMixin
from llmaos_tui.ops.move_streams import CHUNK, PIPE_DEPTH

__all__ = [
    "AUDIT_ACTION",
    "CHUNK",
    "COMMIT_REPO",
    "PIPE_DEPTH",
    "STEPS",
    "MoveEngine",
    "MoveError",
    "MovePlan",
    "MoveResult",
    "Progress",
    "ProgressFn",
    "Refusal",
    "describe",
    "recover_all",
]


class MoveEngine(PrecheckMixin, RecoveryMixin):
    """Moves containers from ``src`` to ``dst``.

    ``read_only`` refuses every move; ``stop_timeout`` bounds the source's stop (then it is
    killed, as ``docker stop`` does); ``settle`` is how long the target must keep running to
    count as verified; ``health_timeout`` how long a health check may take to say healthy.
    The parts: :mod:`~llmaos_tui.ops.move_precheck` (the plan and its refusals),
    :mod:`~llmaos_tui.ops.move_steps` (the steps), :mod:`~llmaos_tui.ops.move_recovery`
    (the two ends), :mod:`~llmaos_tui.ops.move_streams` (bytes between engines).
    """

    def __init__(
        self,
        src: Engine,
        dst: Engine,
        journal: MoveJournal,
        audit: AuditLog,
        *,
        read_only: bool = False,
        stop_timeout: int = 10,
        settle: float = 3.0,
        health_timeout: float = 60.0,
        operator: str | None = None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.journal = journal
        self.audit = audit
        self.read_only = read_only
        self.stop_timeout = stop_timeout
        self.settle = settle
        self.health_timeout = health_timeout
        self.operator = operator
        self._progress: ProgressFn | None = None
        self._move_id = ""

    def inspect(self, container: str) -> dict[str, Any]:
        """The source container's ``docker inspect``."""
        return dict(self.src.client.api.inspect_container(container))

    def plan(self, container: str, *, commit: bool = False, keep_source: bool = False) -> MovePlan:
        """Inspect both sides and work out the move, refusals included; changes nothing."""
        attrs = self.inspect(container)
        return self._plan(attrs, commit=commit, keep_source=keep_source)

    def precheck(self, container: str, *, commit: bool = False) -> list[Refusal]:
        """Every reason the move cannot work, each with a clear message; [] when it can."""
        if self.read_only:
            return [self._read_only_refusal()]
        return self.plan(container, commit=commit).refusals

    def live_unavailable(self) -> str:
        """Why a live move (checkpoint on the source, restore on the target) cannot run.

        It needs both engines started with experimental features and ``criu check`` passing
        on both hosts. Where all of that holds, the answer is still that this version does
        not carry a checkpoint between hosts: it could not be tried on a kernel where CRIU
        works, and an untried path is not offered for a move that must not lose anything.
        """
        reasons = []
        for eng in (self.src, self.dst):
            try:
                if not eng.client.api.info().get("ExperimentalBuild"):
                    reasons.append(
                        f"the engine on {eng.name} does not run with experimental features "
                        "(dockerd --experimental)"
                    )
                why = eng.criu_check()
            except Exception as exc:  # noqa: BLE001 - any failure to ask is a reason shown
                why = f"cannot check {eng.name}: {_reason(exc)}"
            if why:
                reasons.append(why)
        if not reasons:
            reasons.append("this version does not carry a checkpoint between hosts yet")
        return "live mode is unavailable: " + "; ".join(reasons)

    def move(
        self,
        container: str,
        *,
        commit: bool = False,
        keep_source: bool = False,
        dry_run: bool = False,
        live: bool = False,
        progress: ProgressFn | None = None,
    ) -> MoveResult:
        """Move ``container`` (name or id) from ``src`` to ``dst``; see the module text.

        ``live`` asks for checkpoint and restore instead of stop and start: refused, with
        :meth:`live_unavailable`'s reasons, before anything changes."""
        self._progress = progress
        timings: dict[str, float] = {}
        t0 = time.monotonic()
        self._emit("", "inspect", "start")
        try:
            attrs = self.inspect(container)
            plan = self._plan(attrs, commit=commit, keep_source=keep_source)
        except docker.errors.NotFound as exc:
            return self._refused_early(
                container,
                "not-found",
                f"no container {container} on {self.src.name} ({_reason(exc)})",
            )
        except Exception as exc:  # noqa: BLE001 - an engine that does not answer: nothing changed
            return self._refused_early(
                container, "unreachable", f"cannot pre-check the move: {_reason(exc)}"
            )
        timings["inspect"] = time.monotonic() - t0
        base = MoveResult(
            "", plan.container, self.src.name, self.dst.name, plan=plan, timings=timings
        )
        if live:
            plan.refusals.append(Refusal("live-unavailable", self.live_unavailable()))
        if plan.refusals:
            base.outcome, base.refusals = "refused", plan.refusals
            base.message = "; ".join(r.message for r in plan.refusals)
            self._audit(plan, None, f"refused: {base.message}", None)
            return base
        if dry_run:
            base.outcome, base.message = "dry_run", "pre-checks passed; nothing changed"
            return base
        try:
            self.audit.check()  # fails closed: a move the log cannot record is not begun
        except OSError as exc:
            base.outcome, base.message = "refused", f"not started: {exc}"
            base.refusals = [Refusal("audit", base.message)]
            return base
        move_id = self.journal.begin(self._journal_plan(attrs, plan))
        self._move_id = base.move_id = move_id
        rec = self.journal.get(move_id)
        try:
            self._run_steps(rec, attrs, plan, base)
        except Exception as exc:  # noqa: BLE001 - any failure mid-move is rolled back or forward
            rec = self.journal.get(move_id)
            base.timings = timings
            return self._resolve(
                rec, failure=f"{self._last_step(rec)}: {_reason(exc)}", result=base
            )
        return base

    def _refused_early(self, container: str, code: str, why: str) -> MoveResult:
        return MoveResult(
            "refused",
            container,
            self.src.name,
            self.dst.name,
            message=why,
            refusals=[Refusal(code, why)],
        )


def recover_all(
    journal: MoveJournal,
    audit: AuditLog,
    engine_for: Callable[[str], Engine],
    *,
    progress: ProgressFn | None = None,
    **engine_options: Any,
) -> list[MoveResult]:
    """Resolve every unfinished move in ``journal`` (run when the console starts).

    ``engine_for(host_name)`` opens a host's engine (it may raise when the host is down: that
    move stays unfinished, reported as "failed", and is tried again next time).
    ``engine_options`` go to :class:`MoveEngine` (``settle``, ``read_only`` is ignored:
    finishing a move the operator started is not a new change).
    """
    out = []
    engine_options.pop("read_only", None)
    settle_override = engine_options.pop("settle", None)
    for rec in journal.unfinished():
        if rec.plan.get("kind") != "container.move":
            continue
        p = rec.plan.get("plan") or {}
        src_name, dst_name = str(rec.plan.get("source", "?")), str(rec.plan.get("target", "?"))
        if rec.unreadable is not None or not p.get("container"):
            why = rec.unreadable or f"move {rec.move_id}: the journal's plan lacks the container"
            out.append(
                MoveResult(
                    "failed",
                    str(p.get("container", "?")),
                    src_name,
                    dst_name,
                    move_id=rec.move_id,
                    message=why,
                )
            )
            continue
        try:
            src, dst = engine_for(src_name), engine_for(dst_name)
        except Exception as exc:  # noqa: BLE001 - no engine yet: the entry stays open
            out.append(
                MoveResult(
                    "failed",
                    p["container"],
                    src_name,
                    dst_name,
                    move_id=rec.move_id,
                    message=f"cannot reach the engines yet: {_reason(exc)}",
                )
            )
            continue
        settle = float(
            settle_override if settle_override is not None else rec.plan.get("settle", 3.0)
        )
        eng = MoveEngine(
            src,
            dst,
            journal,
            audit,
            settle=settle,
            operator=rec.plan.get("operator"),
            **engine_options,
        )
        out.append(eng.recover(rec.move_id, progress=progress))
    return out
