"""One Slurm job as the console shows it, parsed from ``squeue`` and mapped to the
console's request states.

squeue prints what users typed (job names above all) as it is: a name may hold ``|``,
newlines and escape sequences. So the format puts the name last (a ``|`` in it stays in
it) and starts every row with a random marker made for that call (:func:`squeue_format`):
a line without the marker continues the name of the row before, and a name cannot forge
a row because its owner cannot know the marker. Every text field is cut to a bound here;
the console cleans it (``llmaos_agent.safetext.clean``) when drawing.

Ids: ``slurm:CLUSTER:JOBID``. Agent request ids match ``SAFE_ID``
(``llmaos_agent.paths``: letters, digits, ``_ . -``), which has no ``:``, so a ``:`` alone
tells a Slurm job from an agent's request, and the id ends with Slurm's own job id.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal

from llmaos_agent.protocol import RequestInfo

ConsoleState = Literal["queued", "held", "running", "done", "failed", "cancelled"]

PREFIX = "slurm:"
MAX_NAME = 200
MAX_USER = 64
MAX_REASON = 200
MAX_NODELIST = 1000
MAX_GRES = 200
MAX_JOBS = 10_000
"""Rows kept from one squeue answer; a cluster's queue beyond this is cut (and said so)."""

CLUSTER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}\Z")
JOB_ID = re.compile(r"[0-9]{1,12}(?:_(?:[0-9]{1,9}|\[[0-9,%\-]{1,64}\]))?(?:\+[0-9]{1,6})?\Z")
"""Slurm's job ids: ``1234``, an array task ``1234_7`` or a pending array ``1234_[1-9%2]``,
a heterogeneous component ``1234+0``. Nothing else reaches Slurm's commands."""

HELD_REASONS = frozenset({"JobHeldAdmin", "JobHeldUser"})
RUNNING = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "RESIZING"})
QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED"})
HELD = frozenset({"REQUEUE_HOLD", "SUSPENDED", "STOPPED"})
DONE = frozenset({"COMPLETED"})
CANCELLED = frozenset({"CANCELLED", "REVOKED"})
FAILED = frozenset(
    {"FAILED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY",
     "PREEMPTED", "SPECIAL_EXIT"}
)  # fmt: skip
LIVE_STATES = ("queued", "held", "running")

FIELDS = ("id", "user", "state", "reason", "priority", "nice", "cpus", "gres", "nodes",
          "nodelist", "submitted", "name")  # fmt: skip
_CODES = "%i|%u|%T|%r|%Q|%y|%C|%b|%D|%N|%V|%j"
"""squeue's codes for :data:`FIELDS`, in order; ``%j`` (the name) last."""


class BadSlurmId(ValueError):
    """Not an id of the form ``slurm:CLUSTER:JOBID``."""


def slurm_id(cluster: str, job_id: str) -> str:
    return f"{PREFIX}{cluster}:{job_id}"


def is_slurm_id(text: str) -> bool:
    return text.startswith(PREFIX)


def parse_slurm_id(text: str) -> tuple[str, str]:
    """(cluster, Slurm job id) of ``slurm:CLUSTER:JOBID``; :class:`BadSlurmId` otherwise."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] != PREFIX[:-1]:
        raise BadSlurmId(f"{text[:100]!r} is not a Slurm job id (slurm:CLUSTER:JOBID)")
    _, cluster, job = parts
    if not CLUSTER_NAME.match(cluster):
        raise BadSlurmId(f"{cluster[:100]!r} is not a cluster name")
    if not JOB_ID.match(job):
        raise BadSlurmId(f"{job[:100]!r} is not a Slurm job id")
    return cluster, job


def console_state(slurm_state: str, reason: str) -> ConsoleState:
    """The console's state for Slurm's: held when an operator or the user holds a pending
    job (``JobHeldAdmin``/``JobHeldUser``, a requeue hold) or a running one is suspended;
    a state this table does not know counts as queued (it is still Slurm's to run)."""
    base = slurm_state.split("+", 1)[0].split(" ", 1)[0]
    if base == "PENDING" and reason in HELD_REASONS:
        return "held"
    if base in RUNNING:
        return "running"
    if base in QUEUED:
        return "queued"
    if base in HELD:
        return "held"
    if base in DONE:
        return "done"
    if base in CANCELLED:
        return "cancelled"
    if base in FAILED:
        return "failed"
    return "queued"


@dataclass(frozen=True)
class SlurmJob:
    """One job of a cluster: ``state`` in the console's words, ``slurm_state`` in
    Slurm's; ``gpus`` the job's total from its gres (per node times nodes); ``submitted``
    a UNIX time (None when squeue gave none)."""

    cluster: str
    job_id: str
    user: str
    name: str
    state: ConsoleState
    slurm_state: str
    reason: str
    priority: int
    nice: int
    cpus: int
    gpus: int
    gres: str
    nodes: int
    nodelist: str
    submitted: float | None

    @property
    def id(self) -> str:
        return slurm_id(self.cluster, self.job_id)

    def age(self, now: float) -> float | None:
        return None if self.submitted is None else max(0.0, now - self.submitted)

    def why(self) -> str:
        """Where it runs, or why it waits or ended (Slurm's reason, its own state where
        the console's says less)."""
        parts = []
        if self.state == "running" and self.nodelist:
            parts.append(f"on {self.nodelist}")
        if self.state in ("failed", "cancelled") or self.slurm_state not in (
            "PENDING", "RUNNING", "COMPLETED"
        ):  # fmt: skip
            parts.append(self.slurm_state)
        if self.reason and self.reason != "None":
            parts.append(self.reason)
        return " ".join(parts)

    def describe(self) -> str:
        return f"{self.state} priority {self.priority}" + (
            f" nice {self.nice}" if self.nice else ""
        )

    def as_request(self) -> RequestInfo:
        """The job as the console's request record (for the views and the audit path
        shared with the agents' requests): its owner the Slurm user, its reason
        :meth:`why`. Built, not decoded: Slurm's priorities exceed the agents' bounds."""
        return RequestInfo(
            id=self.id, name=self.name, argv=[], shell=False, priority=self.priority,
            cpus=self.cpus, gpus=self.gpus, share_gpu=False, mem=0, state=self.state,
            seq=0, submitted=self.submitted or 0.0, owner=self.user, reason=self.why(),
        )  # fmt: skip

    def to_dict(self, now: float) -> dict[str, Any]:
        d = asdict(self)
        d["id"] = self.id
        d["age_s"] = self.age(now)
        return d


def squeue_format() -> tuple[str, str]:
    """(the marker, squeue's ``-o`` format) for one call: see the module's docstring."""
    mark = f"@{secrets.token_hex(8)}@"
    return mark, f"{mark}|{_CODES}"


def parse_squeue(cluster: str, text: str, mark: str) -> tuple[list[SlurmJob], bool]:
    """The jobs in squeue's output (made with :func:`squeue_format`'s ``mark``), and
    whether rows were cut at :data:`MAX_JOBS`. Rows that do not parse are skipped."""
    rows: list[list[str]] = []
    cut = False
    head = mark + "|"
    for line in text.split("\n"):
        if line.startswith(head):
            if len(rows) >= MAX_JOBS:
                cut = True
                break
            rows.append(line[len(head) :].split("|", len(FIELDS) - 1))
        elif rows and line:
            # The name of the row before held a newline; its own bound still holds.
            rows[-1][-1] = (rows[-1][-1] + "\n" + line)[: MAX_NAME + 1]
    jobs = [j for j in (_job(cluster, r) for r in rows) if j is not None]
    return jobs, cut


def _job(cluster: str, row: list[str]) -> SlurmJob | None:
    if len(row) != len(FIELDS):
        return None
    f = dict(zip(FIELDS, row, strict=True))
    if not JOB_ID.match(f["id"]):
        return None
    nodes = _int(f["nodes"], 1)
    state = f["state"][:40]
    reason = f["reason"][:MAX_REASON]
    return SlurmJob(
        cluster=cluster,
        job_id=f["id"],
        user=f["user"][:MAX_USER],
        name=f["name"][:MAX_NAME],
        state=console_state(state, reason),
        slurm_state=state,
        reason=reason,
        priority=_int(f["priority"], 0),
        nice=_int(f["nice"], 0),
        cpus=_int(f["cpus"], 0),
        gpus=gpus_of(f["gres"]) * max(nodes, 1),
        gres=f["gres"][:MAX_GRES],
        nodes=nodes,
        nodelist=f["nodelist"][:MAX_NODELIST],
        submitted=_utc_time(f["submitted"]),
    )


def gpus_of(gres: str) -> int:
    """GPUs per node in squeue's ``%b``: ``gres:gpu:2``, ``gres/gpu:a100:2``, ``gpu:1``,
    several joined by commas; ``N/A`` or ``(null)`` for none."""
    total = 0
    for raw in gres[:MAX_GRES].split(","):
        item = raw.strip().removeprefix("gres:").removeprefix("gres/")
        parts = item.split("(")[0].split(":")
        if parts[0] != "gpu":
            continue
        count = parts[-1] if len(parts) > 1 else "1"
        total += int(count) if count.isdigit() and len(count) < 6 else 1
    return total


def _int(text: str, default: int) -> int:
    text = text.strip()
    if text.lstrip("-").isdigit() and len(text) < 20:
        return int(text)
    return default


def _utc_time(text: str) -> float | None:
    """squeue's ``%V`` (run with ``TZ=UTC``, see the client) as a UNIX time."""
    try:
        t = dt.datetime.fromisoformat(text.strip()[:32])
    except ValueError:
        return None
    return t.replace(tzinfo=dt.timezone.utc).timestamp() if t.tzinfo is None else t.timestamp()
