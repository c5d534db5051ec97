"""A hosts-level balancing plan for a Slurm cluster: pending jobs move away from hot
nodes by updating their node constraints (``scontrol update JobId=N ExcNodeList=...``).

What was chosen, and why:

- *Hot* is Slurm's own measure: a node whose ``CPULoad`` (the load average slurmd
  reports, read with the nodes: :mod:`.nodes`) per CPU is at least ``hot_load``
  (default :data:`HOT_LOAD`), and that is up (idle, mixed, allocated, completing). It
  needs no agent on the node, so a cluster's nodes that are no inventory hosts count as
  well; load that Slurm's own jobs did not cause (a service beside slurmd) counts too,
  which is the point: Slurm allocates CPUs, not load.
- A *pending* job is moved when a hot node is among the nodes it may get (its partitions'
  nodes, less those it already excludes): the hot ones are added to its ``ExcNodeList``,
  its own exclusions kept. A job is left alone (and the plan says why) when it asks for a
  hot node by name (``ReqNodeList``), when no up, cool node would be left to it (a job
  that could never start is worse than one on a busy node), or when Slurm's node lists
  did not parse. Running jobs are not touched: Slurm does not migrate them.
- Only constraints change; priorities and the jobs' own requests stay. An exclusion
  stays after the node cools; ``llmaos-tui plan --slurm`` says which jobs have one.

:func:`build_plan` is pure (tested with synthetic input); :func:`apply_plan` carries a
plan out through the cluster's client, each job one audited change (action
``slurm.exclude_nodes``): refused and audited in read-only mode, the audit checked first
(fails closed), Slurm's refusal recorded in its words, a command without an answer in
time recorded as unknown (it may have acted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmaos_tui.fleet.link import LinkDown
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.changes import ReadOnlyConsole
from llmaos_tui.slurm.client import SlurmClient, SlurmRefused, SlurmTimedOut, outcome_word
from llmaos_tui.slurm.jobs import slurm_id
from llmaos_tui.slurm.nodes import SlurmNode
from llmaos_tui.slurm.pending import PendingJob
from llmaos_tui.slurm.runner import LinkLost

HOT_LOAD = 0.9
"""Load per CPU from which a node is hot."""
UP = frozenset({"idle", "mixed", "allocated", "completing"})
ACTION = "slurm.exclude_nodes"
MAX_MOVES = 32


@dataclass(frozen=True)
class Exclusion:
    """One job's new ``ExcNodeList``: ``before`` its own, ``exclude`` the new whole list
    (``before`` and ``added``, the hot nodes it may no longer get)."""

    job_id: str
    user: str
    before: tuple[str, ...]
    added: tuple[str, ...]
    exclude: tuple[str, ...]


@dataclass(frozen=True)
class Left:
    """A pending job that may get a hot node and is left alone, and why."""

    job_id: str
    why: str


@dataclass(frozen=True)
class SlurmPlan:
    cluster: str
    hot_load: float
    hot: tuple[tuple[str, float], ...]
    """The hot nodes and their load per CPU, hottest first."""
    moves: tuple[Exclusion, ...]
    left: tuple[Left, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "hot_load": self.hot_load,
            "hot": [{"node": n, "load_per_cpu": round(v, 3)} for n, v in self.hot],
            "moves": [
                {
                    "job": slurm_id(self.cluster, m.job_id),
                    "user": m.user,
                    "exclude_before": list(m.before),
                    "exclude_added": list(m.added),
                    "exclude": list(m.exclude),
                }
                for m in self.moves
            ],
            "left": [{"job": slurm_id(self.cluster, x.job_id), "why": x.why} for x in self.left],
        }


def hot_nodes(nodes: Sequence[SlurmNode], hot_load: float = HOT_LOAD) -> list[SlurmNode]:
    """The up nodes whose load per CPU is at least ``hot_load``, hottest first."""
    hot = [
        n for n in nodes
        if n.state in UP and (load := n.load_per_cpu) is not None and load >= hot_load
    ]  # fmt: skip
    return sorted(hot, key=lambda n: (-(n.load_per_cpu or 0.0), n.name))


def build_plan(
    cluster: str,
    jobs: Sequence[PendingJob],
    nodes: Sequence[SlurmNode],
    *,
    hot_load: float = HOT_LOAD,
    max_moves: int = MAX_MOVES,
) -> SlurmPlan:
    """The plan for ``jobs`` (pending) on ``nodes``: see the module's docstring."""
    if not hot_load > 0:
        raise ValueError(f"a hot load is a load per CPU above 0, not {hot_load!r}")
    hot = hot_nodes(nodes, hot_load)
    hot_names = {n.name for n in hot}
    moves: list[Exclusion] = []
    left: list[Left] = []
    for job in jobs:
        if job.excluded is None or job.required is None:
            left.append(Left(job.job_id, "Slurm's node lists of the job did not parse"))
            continue
        parts = set(job.partitions)
        eligible = [n for n in nodes if parts & set(n.partitions) and n.name not in job.excluded]
        on_hot = sorted(n.name for n in eligible if n.name in hot_names)
        if not on_hot:
            continue  # no hot node it could get: nothing to move
        asked = sorted(job.required & set(on_hot))
        if asked:
            left.append(Left(job.job_id, f"asks for hot node {', '.join(asked)} by name"))
            continue
        cool = [n for n in eligible if n.name not in hot_names and n.state in UP]
        if len(cool) < max(job.nodes, 1):
            # Excluded from all but too few nodes, a job could never start: worse than waiting.
            why = (
                f"fewer than the {job.nodes} up nodes it needs that are not hot would be left"
                if job.nodes > 1
                else "no up node that is not hot would be left to it"
            )
            left.append(Left(job.job_id, why))
            continue
        if len(moves) >= max(max_moves, 0):
            left.append(Left(job.job_id, f"past the plan's {max_moves} moves (--max-moves)"))
            continue
        before = tuple(sorted(job.excluded))
        moves.append(
            Exclusion(
                job.job_id,
                job.user,
                before,
                tuple(on_hot),
                tuple(sorted(job.excluded | set(on_hot))),
            )
        )
    hot_loads = tuple((n.name, n.load_per_cpu or 0.0) for n in hot)
    return SlurmPlan(cluster, hot_load, hot_loads, tuple(moves), tuple(left))


async def plan_cluster(
    c: SlurmClient, *, hot_load: float = HOT_LOAD, max_moves: int = MAX_MOVES
) -> SlurmPlan:
    """The cluster's plan from its nodes and pending jobs as Slurm says now."""
    nodes = await c.nodes()
    jobs = await c.pending()
    return build_plan(c.name, jobs, nodes, hot_load=hot_load, max_moves=max_moves)


@dataclass(frozen=True)
class Outcome:
    """A move carried out: ``result`` as audited (``ok``, ``refused: ...``,
    ``failed: ...``, ``unknown: ...``), ``exclude`` the job's list read back."""

    move: Exclusion
    result: str
    exclude: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result == "ok"


def _list(names: Sequence[str]) -> str:
    return "ExcNodeList=" + (",".join(names) or "(none)")


async def apply_plan(
    c: SlurmClient, plan: SlurmPlan, *, audit: AuditLog, read_only: bool,
    stop_on_failure: bool = False,
) -> list[Outcome]:  # fmt: skip
    """Each move of ``plan`` through ``c`` (one audited change each); the outcomes in
    order. Raises :class:`ReadOnlyConsole` (every move audited as refused first) and the
    audit log's :class:`~llmaos_tui.ops.audit.AuditUnavailable` (nothing more tried)."""
    host = c.runner.where
    out: list[Outcome] = []
    if read_only:
        for m in plan.moves:
            audit.append(action=ACTION, host=host, target=_target(plan, m), before=_list(m.before),
                         result="refused: read-only console")  # fmt: skip
        raise ReadOnlyConsole("read-only: this console makes no changes (--read-only)")
    for m in plan.moves:
        audit.check()  # fails closed: a change this console cannot record is not made
        target, before = _target(plan, m), _list(m.before)
        try:
            job = await c.exclude_nodes(m.job_id, m.exclude)
        except (SlurmTimedOut, LinkLost) as exc:
            result = f"{outcome_word(exc)}: {exc}"
            audit.append(action=ACTION, host=host, target=target, before=before,
                         after=_list(m.exclude), result=result, timed_out=True)  # fmt: skip
            out.append(Outcome(m, result))
        except (SlurmRefused, ValueError) as exc:
            result = f"refused: {exc}"
            audit.append(action=ACTION, host=host, target=target, before=before, result=result)
            out.append(Outcome(m, result))
        except (LinkDown, OSError) as exc:
            result = f"failed: {exc}"
            audit.append(action=ACTION, host=host, target=target, before=before, result=result)
            out.append(Outcome(m, result))
        else:
            after = tuple(sorted(job.excluded)) if job.excluded is not None else None
            audit.append(action=ACTION, host=host, target=target, before=before,
                         after=_list(after or ()), result="ok")  # fmt: skip
            out.append(Outcome(m, "ok", after))
        if stop_on_failure and not out[-1].ok:
            break
    return out


def _target(plan: SlurmPlan, m: Exclusion) -> str:
    return f"request {slurm_id(plan.cluster, m.job_id)}"
