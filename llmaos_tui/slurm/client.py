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
from llmaos_tui.fleet.link import LinkDown
from llmaos_tui.fleet.session import CallError
from llmaos_tui.slurm.jobs import (
    JOB_ID,
    LIVE_STATES,
    MAX_NAME,
    SlurmJob,
    parse_squeue,
    squeue_format,
)
from llmaos_tui.slurm.nodes import NAME as NODE_NAME
from llmaos_tui.slurm.nodes import SlurmNode, parse_nodes, parse_nodes_json
from llmaos_tui.slurm.pending import PendingJob, parse_pending, pending_format
from llmaos_tui.slurm.runner import Result, Runner

MAX_WORDS = 1000
"""Characters of Slurm's stderr kept in a refusal."""
LOG_BYTES = 64 * 1024
"""The end of a job's output that ``log`` shows."""
LOG_MISSING = 3
LOG_REFUSED = 4
READ_LOG = """
import os, pwd, stat, sys
path, user, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
try:
    fd = os.open(path, flags)
except FileNotFoundError:
    sys.stderr.write("No such file\\n"); sys.exit(3)
except OSError as e:
    sys.stderr.write((e.strerror or "cannot open") + " (a link is not followed)\\n"); sys.exit(4)
st = os.fstat(fd)
try:
    uid = pwd.getpwnam(user).pw_uid
except KeyError:
    uid = None
if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
    sys.stderr.write("not a regular file of the job's user %s\\n" % user); sys.exit(4)
os.lseek(fd, max(st.st_size - limit - 1, 0), 0)
out, left = sys.stdout.buffer, limit + 1
while left > 0:
    chunk = os.read(fd, min(left, 65536))
    if not chunk:
        break
    out.write(chunk)
    left -= len(chunk)
out.flush()
"""
"""The log reader run on the cluster's host (argv: path, the job's user, bytes): exit 3
when there is no file, 4 when it is refused; see :meth:`SlurmClient.log`."""
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
        super().__init__(f"{'' if acted else 'timed out: '}{said}{tail}")


def outcome_word(exc: SlurmTimedOut | LinkDown) -> str:
    """The audit's word for a change whose answer did not come: ``ok`` when Slurm had
    accepted it (only the read-back failed), ``unknown`` when it may have acted (no answer,
    or the link went after the command started), ``failed`` when nothing was sent (a read
    before the change timed out)."""
    acted = exc.acted if isinstance(exc, SlurmTimedOut) else None
    return {True: "ok", None: "unknown", False: "failed"}[acted]


def _not_read_back(job_id: str, exc: Exception) -> SlurmTimedOut:
    """Slurm accepted a change and reading the job back failed (no answer, the link went,
    the job moved on): the change was made (``acted=True``: audited ``ok``), not refused."""
    said = str(exc)[:MAX_WORDS]
    return SlurmTimedOut(
        Result(None, "", f"done, but job {job_id} not read back: {said}"), acted=True
    )


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
                return nodes
            except ValueError:  # json's errors are ValueErrors too
                pass  # another release's layout, or an answer cut at MAX_OUTPUT: the text form
        elif r.rc is None:
            raise SlurmTimedOut(r, acted=False)
        elif "json" not in r.err.lower():
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
        """The job read back after Slurm accepted a change."""
        try:
            return await self.job(job_id)
        except (SlurmTimedOut, SlurmRefused, LinkDown) as exc:
            raise _not_read_back(job_id, exc) from exc

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

    async def pending(self) -> list[PendingJob]:
        """The pending jobs with their node constraints (partition, ``ReqNodeList``,
        ``ExcNodeList``), for a balancing plan (:mod:`.plan`)."""
        mark, fmt = pending_format()
        r = await self._ok("squeue", "-h", "-t", "PENDING", "-o", fmt)
        return parse_pending(r.out, mark)

    async def exclude_nodes(self, job_id: str, nodes: Sequence[str]) -> PendingJob:
        """``scontrol update JobId=N ExcNodeList=a,b`` (a pending job's nodes to avoid;
        the list replaces the job's own); the job read back. Names must be node names."""
        check_job_id(job_id)
        if not nodes or not all(NODE_NAME.match(n) for n in nodes):
            raise ValueError(f"not a list of node names: {list(nodes)[:10]!r}")
        await self._ok(
            "scontrol", "update", f"JobId={job_id}", f"ExcNodeList={','.join(nodes)}", change=True
        )
        try:
            found = [j for j in await self.pending() if j.job_id == job_id]
        except (SlurmTimedOut, SlurmRefused, LinkDown) as exc:
            raise _not_read_back(job_id, exc) from exc
        if not found:  # it started (or ended) since: the update was made all the same
            raise _not_read_back(job_id, SlurmRefused("it is no longer pending"))
        return found[0]

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
        """The end of the job's output file, read on the cluster's host by one program
        (:data:`READ_LOG`, ``python3``) as the user the console logs in as. The
        path is squeue's ``STDOUT`` field (``%j`` and the like filled in)."""
        job = await self.job(job_id)
        r = await self._ok("squeue", "-h", "-t", "all", "-j", job_id, "-O", "STDOUT:4096")
        path = r.out.split("\n")[0].rstrip()
        if not path.startswith("/"):
            raise SlurmRefused(f"job {job_id} has no output file Slurm can name ({path[:200]!r})")
        # The path is the job owner's choice (--output) and the read runs with the
        # console's login: a hostile job could name the operator's key or /etc/shadow, or
        # swap its file for a link between a check and a read. So one program on the host
        # opens it without following a link (O_NOFOLLOW, O_NONBLOCK: no FIFO can stall
        # it), checks the *opened* file (fstat: a regular file of the job's user) and reads
        # its end from that same descriptor: nothing is left to swap.
        t = await self._run(
            "python3", "-I", "-S", "-c", READ_LOG, path, job.user, str(max_bytes),
            max_bytes=max_bytes + 1,
        )  # fmt: skip
        if t.rc is None:
            raise SlurmTimedOut(t, acted=False, argv=("log", job_id))
        if t.rc == LOG_MISSING and job.state in ("queued", "held"):
            return LogTail(path, "", True, False)  # not started: no output yet
        if t.rc == LOG_REFUSED:
            raise SlurmRefused(f"job {job_id}'s output {path[:200]!r}: {words(t)}: not read")
        if t.rc != 0:
            if t.rc == 127:
                raise SlurmRefused(f"{self.runner.where}: python3 is needed to read a job's log")
            raise SlurmRefused(words(t))
        data = t.out
        cut = len(data.encode()) > max_bytes
        if cut:
            data = data.encode()[-max_bytes:].decode(errors="replace")
        return LogTail(path, data, job.state in ("queued", "running", "held"), cut)
