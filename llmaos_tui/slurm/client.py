"""A cluster's jobs and the actions on them, through Slurm's own commands.

Every command is a fixed argv with checked values in it (a job id matching
:data:`~llmaos_tui.slurm.jobs.JOB_ID`, integers, a name and a command that are single
argv elements); nothing is built into a shell string here (see :mod:`.runner` for the SSH
channel). A command Slurm refuses raises :class:`SlurmRefused` with Slurm's own words
(its stderr, without the ``scontrol:``/``sbatch: error:`` prefixes, bounded; the console
cleans them when it shows them). A runner that cannot reach its host raises
:class:`~llmaos_tui.fleet.link.LinkDown`.

``prio``: Slurm's own priority (``scontrol update JobId=N Priority=P``) where the user may
(an operator or Slurm administrator); where Slurm refuses that (a plain user: "Access/
permission denied", or under multifactor "change nice instead"), the Nice that gives the
job priority P (Slurm takes Nice from the priority it computes), which a plain user may
set only upwards, so only to lower their job. :class:`PrioResult` says which was done.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from llmaos_agent.protocol import RpcError
from llmaos_tui.fleet.session import CallError
from llmaos_tui.slurm.jobs import (
    JOB_ID,
    LIVE_STATES,
    MAX_NAME,
    SlurmJob,
    parse_squeue,
    squeue_format,
)
from llmaos_tui.slurm.nodes import SlurmNode, parse_nodes, parse_nodes_json
from llmaos_tui.slurm.runner import Result, Runner

MAX_WORDS = 1000
"""Characters of Slurm's stderr kept in a refusal."""
LOG_BYTES = 64 * 1024
"""The end of a job's output that ``log`` shows."""
NOT_PERMITTED = ("Access/permission denied", "change nice instead")
SLURM_REFUSED = -32010
"""The code a refusal carries as a :class:`CallError` (the audit path's refusal kind)."""


class SlurmRefused(CallError):
    """Slurm refused a command; the message is its own words."""

    def __init__(self, words: str) -> None:
        super().__init__(RpcError(code=SLURM_REFUSED, message=words))


class SlurmTimedOut(TimeoutError):
    """A Slurm command gave no answer within the client's timeout and was ended. A change
    may still have been made (slurmctld may have acted before the answer was lost), so it
    is neither a refusal nor a success: the change path audits it as ``unknown``
    (:func:`llmaos_tui.slurm.audited.slurm_change`). ``acted`` is False for a read (nothing
    to undo), None for a change that may have acted."""

    def __init__(self, r: Result, *, acted: bool | None = None, argv: Sequence[str] = ()) -> None:
        self.acted = acted
        what = " ".join(argv[:3]) or "a Slurm command"
        said = r.err.strip()[:MAX_WORDS] or f"{what}: no answer in time"
        tail = {None: "; it may have acted: check the job's state", True: ""}.get(acted, "")
        super().__init__(f"timed out: {said}{tail}")


@dataclass(frozen=True)
class SubmitSpec:
    """What ``sbatch`` is asked for: ``argv`` run as these words (quoted for the job's
    shell) or, with ``shell``, ``argv[0]`` as a shell command line; ``mem`` in bytes
    (0: Slurm's default); ``nice`` passed as ``--nice`` when not 0."""

    argv: Sequence[str]
    name: str = ""
    cpus: int = 1
    gpus: int = 0
    mem: int = 0
    cwd: str | None = None
    shell: bool = False
    nice: int = 0


@dataclass(frozen=True)
class PrioResult:
    """The job after ``prio``; ``how`` is ``"Priority"`` or ``"Nice"``, ``note`` says why
    Nice was used (Slurm's words for refusing Priority)."""

    job: SlurmJob
    how: str
    note: str = ""


@dataclass(frozen=True)
class LogTail:
    path: str
    data: str
    running: bool
    truncated: bool


def words(r: Result) -> str:
    """Slurm's own words for a failed command: its stderr (else stdout), the program's
    prefixes taken off, cut to :data:`MAX_WORDS`."""
    text = (r.err.strip() or r.out.strip() or f"exit status {r.rc}")[: MAX_WORDS * 2]
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        for prefix in ("sbatch: error: ", "scontrol: error: ", "scancel: error: ",
                       "squeue: error: ", "error: ", "slurm_load_jobs error: "):  # fmt: skip
            line = line.removeprefix(prefix)
        if line:
            lines.append(line)
    return "; ".join(lines)[:MAX_WORDS]


def check_job_id(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ValueError(f"{job_id[:100]!r} is not a Slurm job id")
    return job_id


class SlurmClient:
    """One cluster (``name``) whose commands run on ``runner``."""

    def __init__(self, name: str, runner: Runner, *, timeout: float = 30.0) -> None:
        self.name = name
        self.runner = runner
        self.timeout = timeout
        self.truncated = False  # the last list was cut at MAX_JOBS
        self.nodes_truncated = False  # the last nodes() was cut at nodes.MAX_NODES

    async def _run(self, *argv: str, max_bytes: int | None = None) -> Result:
        if max_bytes is None:
            return await self.runner.run(argv, timeout=self.timeout)
        return await self.runner.run(argv, timeout=self.timeout, max_bytes=max_bytes)

    async def _ok(self, *argv: str, change: bool = False) -> Result:
        """``argv`` run; :class:`SlurmRefused` in Slurm's words when it failed,
        :class:`SlurmTimedOut` when it did not answer (``change``: it may have acted)."""
        r = await self._run(*argv)
        if r.rc is None:
            raise SlurmTimedOut(r, acted=None if change else False, argv=argv)
        if r.rc != 0:
            raise SlurmRefused(words(r))
        return r

    # ------------------------------------------------------------------ reads

    async def jobs(self, *, finished: bool = False, job_id: str | None = None) -> list[SlurmJob]:
        """The cluster's jobs: the live ones, or (``finished``) those Slurm still
        remembers too (for MinJobAge seconds without accounting). squeue runs with
        ``TZ=UTC`` so that submit times read the same whatever the host's zone."""
        mark, fmt = squeue_format()
        argv = ["env", "TZ=UTC", "squeue", "-h", "-o", fmt]
        if finished or job_id is not None:
            argv += ["-t", "all"]
        if job_id is not None:
            argv += ["-j", check_job_id(job_id)]
        r = await self._run(*argv)
        if r.rc is None:
            raise SlurmTimedOut(r, acted=False, argv=argv[2:])
        if r.rc != 0:
            if job_id is not None and "Invalid job id" in r.err:
                return []
            raise SlurmRefused(words(r))
        jobs, self.truncated = parse_squeue(self.name, r.out, mark)
        if not finished and job_id is None:
            jobs = [j for j in jobs if j.state in LIVE_STATES]
        return jobs

    async def nodes(self) -> list[SlurmNode]:
        """The cluster's nodes and their state, from ``sinfo --json``, or ``scontrol show
        node`` where sinfo has no ``--json`` (:mod:`.nodes` says why not ``scontrol -o``);
        ``nodes_truncated`` says whether the list was cut."""
        r = await self._run("sinfo", "--json")
        if r.rc == 0:
            try:
                nodes, self.nodes_truncated = parse_nodes_json(r.out)
            except ValueError as exc:  # json's errors are ValueErrors too
                raise SlurmRefused(f"sinfo --json: not sinfo's answer ({exc})"[:MAX_WORDS]) from exc
            return nodes
        if r.rc is None:
            raise SlurmTimedOut(r, acted=False)
        if "--json" not in r.err and "json" not in r.err.lower():
            raise SlurmRefused(words(r))
        t = await self._ok("scontrol", "show", "node")  # sinfo without --json: Slurm < 21.08
        nodes, self.nodes_truncated = parse_nodes(t.out)
        return nodes

    async def job(self, job_id: str) -> SlurmJob:
        """One job, finished or not; :class:`SlurmRefused` when Slurm does not know it."""
        found = [j for j in await self.jobs(job_id=job_id) if j.job_id == job_id]
        if not found:
            raise SlurmRefused(f"Invalid job id specified: no job {job_id} on cluster {self.name}")
        return found[0]

    # ------------------------------------------------------------------ actions

    async def _after(self, job_id: str) -> SlurmJob:
        """The job read back after Slurm accepted a change: a read that times out then
        says the change was made (``acted=True``), not that it may have been."""
        try:
            return await self.job(job_id)
        except SlurmTimedOut as exc:
            raise SlurmTimedOut(
                Result(None, "", f"done, but reading job {job_id} back gave no answer in time"),
                acted=True,
            ) from exc

    async def prio(self, job_id: str, priority: int) -> PrioResult:
        if priority < 1:
            # Priority=0 is Slurm's hold; the console has its own key for that.
            raise ValueError("a Slurm priority is 1 or more (0 holds the job: use hold)")
        before = await self.job(job_id)
        r = await self._run("scontrol", "update", f"JobId={job_id}", f"Priority={priority}")
        if r.rc is None:  # no Nice after it: the Priority may have been set
            raise SlurmTimedOut(r, argv=("scontrol", "update", f"Priority={priority}"))
        if r.rc == 0:
            return PrioResult(await self._after(job_id), "Priority")
        said = words(r)
        if not any(w in said for w in NOT_PERMITTED):
            raise SlurmRefused(said)
        nice = before.nice + (before.priority - priority)
        n = await self._run("scontrol", "update", f"JobId={job_id}", f"Nice={nice}")
        if n.rc is None:
            raise SlurmTimedOut(n, argv=("scontrol", "update", f"Nice={nice}"))
        if n.rc != 0:
            raise SlurmRefused(f"Priority={priority}: {said}; Nice={nice}: {words(n)}")
        return PrioResult(await self._after(job_id), "Nice", f"Priority={priority}: {said}")

    async def hold(self, job_id: str) -> SlurmJob:
        await self._ok("scontrol", "hold", check_job_id(job_id), change=True)
        return await self._after(job_id)

    async def release(self, job_id: str) -> SlurmJob:
        await self._ok("scontrol", "release", check_job_id(job_id), change=True)
        return await self._after(job_id)

    async def top(self, job_id: str) -> SlurmJob:
        await self._ok("scontrol", "top", check_job_id(job_id), change=True)
        return await self._after(job_id)

    async def cancel(self, job_id: str) -> SlurmJob:
        await self._ok("scancel", check_job_id(job_id), change=True)
        return await self._after(job_id)

    async def submit(self, spec: SubmitSpec) -> SlurmJob:
        if not spec.argv:
            raise ValueError("submit: no command")
        argv = ["sbatch", "--parsable", f"--cpus-per-task={max(int(spec.cpus), 1)}"]
        name = spec.name or (spec.argv[0].split("/")[-1] if not spec.shell else "")
        if name:
            argv.append(f"--job-name={name[:MAX_NAME]}")
        if spec.gpus:
            argv.append(f"--gres=gpu:{int(spec.gpus)}")
        if spec.mem:
            argv.append(f"--mem={math.ceil(int(spec.mem) / (1 << 20))}M")
        if spec.cwd:
            argv.append(f"--chdir={spec.cwd}")
        if spec.nice:
            argv.append(f"--nice={int(spec.nice)}")
        # --wrap is run by sh on the node: the argv's words quoted, or the user's line.
        wrap = spec.argv[0] if spec.shell else shlex.join(spec.argv)
        argv.append(f"--wrap={wrap}")
        r = await self._ok(*argv, change=True)  # a lost answer may hide a new job
        job_id = r.out.strip().split(";")[0]
        if not JOB_ID.match(job_id):
            raise SlurmRefused(f"sbatch answered no job id: {r.out.strip()[:200]!r}")
        return await self._after(job_id)

    async def log(self, job_id: str, max_bytes: int = LOG_BYTES) -> LogTail:
        """The end of the job's output file, read on the cluster's host with ``tail``
        (as the user the console logs in as, so their rights decide what is read). The
        path is squeue's ``STDOUT`` field (``%j`` and the like filled in)."""
        job = await self.job(job_id)
        r = await self._ok("squeue", "-h", "-t", "all", "-j", job_id, "-O", "STDOUT:4096")
        path = r.out.split("\n")[0].rstrip()
        if not path.startswith("/"):
            raise SlurmRefused(f"job {job_id} has no output file Slurm can name ({path[:200]!r})")
        # The path is the job owner's choice (--output) and tail runs with the console's
        # login: a hostile job could name the operator's key or /etc/shadow. Read only a
        # regular file (not a link) that the job's own user owns. (A job owner can still
        # swap the file between the check and the read; the check stops the plain case.)
        st = await self._run("stat", "-c", "%U:%F", "--", path, max_bytes=4096)
        owner, _, kind = st.out.strip().partition(":")
        if st.rc == 0 and (owner != job.user or kind not in ("regular file", "regular empty file")):
            raise SlurmRefused(
                f"job {job_id}'s output {path[:200]!r} is a {kind or 'file'} of {owner!r}, not a"
                f" file of the job's user {job.user!r}: not read"
            )
        t = await self._run("tail", "-c", str(max_bytes + 1), "--", path, max_bytes=max_bytes + 1)
        if t.rc != 0:
            if job.state in ("queued", "held") and "No such file" in t.err:
                return LogTail(path, "", True, False)  # not started: no output yet
            raise SlurmRefused(words(t))
        data = t.out
        cut = len(data.encode()) > max_bytes
        if cut:
            data = data.encode()[-max_bytes:].decode(errors="replace")
        return LogTail(path, data, job.state in ("queued", "running", "held"), cut)
