"""The app's side of Slurm: the hosts file's clusters on the requests screen, and the
requests screen's keys on their jobs.

A mixin of :class:`llmaos_tui.app.LlmaosApp` (as :class:`~llmaos_tui.plan_actions.PlanActions`
is). The clusters are :attr:`SlurmActions.slurm_clients`, built by the CLI from the hosts
file (:func:`llmaos_tui.cli_requests.slurm_clusters`) and given to the app before it runs.

- While the requests screen is on top (it says so with :class:`RequestsShown`), one async
  worker on the app's loop reads every cluster's jobs (``squeue -t all``) every
  :data:`POLL_S` seconds, and at once after a change; it posts :class:`SlurmJobs`, whose
  handler gives the rows to the screen. The worker never touches a widget.
- :meth:`SlurmActions.slurm_change` takes a :class:`ChangeIntent` whose host is
  ``slurm:NAME`` (the screen's rows of that cluster) and carries it out with the
  cluster's client through :func:`llmaos_tui.ops.changes.change`, as the CLI does
  (``_slurm_change``): refused and audited in read-only mode, the audit checked first,
  Slurm's refusal recorded and shown in its words (cleaned by the app's ``notify``).
- While any cluster is configured, a second worker reads every cluster's nodes
  (``scontrol -o show node``) every :data:`NODES_POLL_S` seconds and posts
  :class:`SlurmNodes`; its handler sets :attr:`HostState.slurm` on each inventory host
  that is a node (:func:`node_of`: by the node's name or hostname; ``local`` is this
  machine's short hostname) and redraws those rows of the fleet screen.
- :class:`OpenSlurmLog` shows the end of the job's output file, read through Slurm.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.app import App
from textual.message import Message

from llmaos_agent.protocol import LogChunk, LogQuery, Reprioritize, RequestSpec
from llmaos_tui.fleet.link import LinkDown
from llmaos_tui.fleet.state import FleetState, HostState
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.changes import ReadOnlyConsole

# The requests screen and the Slurm package are imported when first used, not with the
# app: the console's first screen needs neither (docs/BENCHMARKS.md, start-up).
if TYPE_CHECKING:
    from textual.worker import Worker

    from llmaos_tui.screens.intents import ChangeIntent
    from llmaos_tui.screens.requests import OpenSlurmLog, RequestsShown, SlurmRow
    from llmaos_tui.slurm import PrioResult, SlurmClient, SlurmJob, SlurmNode

SLURM_HOST = "slurm:"
"""The host label of a cluster's rows (``llmaos_tui.screens.requests.SLURM_HOST``)."""

POLL_S = 2.0
"""Seconds between two reads of a cluster's queue while the requests screen is shown."""
NODES_POLL_S = 10.0
"""Seconds between two reads of the clusters' nodes (the fleet's SLURM state)."""
LOCAL = "local"


def _failures() -> tuple[type[BaseException], ...]:
    """What reading or acting on a cluster may raise that is shown, not a bug."""
    from llmaos_tui.slurm import SlurmRefused  # noqa: PLC0415

    return (SlurmRefused, LinkDown, OSError, asyncio.TimeoutError)


class SlurmJobs(Message):
    """A cluster's jobs as just read (``jobs`` None and ``error``: it could not be)."""

    def __init__(self, cluster: str, jobs: Sequence[SlurmJob] | None, error: str = "") -> None:
        super().__init__()
        self.cluster = cluster
        self.jobs = jobs
        self.error = error


class SlurmNodes(Message):
    """A cluster's nodes as just read (``nodes`` None and ``error``: they could not be)."""

    def __init__(self, cluster: str, nodes: Sequence[SlurmNode] | None, error: str = "") -> None:
        super().__init__()
        self.cluster = cluster
        self.nodes = nodes
        self.error = error


def host_names(h: HostState) -> set[str]:
    """The names a node of a cluster may know ``h`` by: its inventory name, its agent's
    hostname (short too) and, for ``local``, this machine's short hostname."""
    names = {h.name}
    if h.hello is not None:
        names.add(h.hello.host.hostname)
    if h.name == LOCAL:
        names.add(socket.gethostname())
    return names | {n.split(".")[0] for n in names if n}


def node_of(h: HostState, nodes: Sequence[SlurmNode]) -> SlurmNode | None:
    """The node among ``nodes`` that is host ``h`` (by the node's name or its hostname)."""
    names = host_names(h)
    for node in nodes:
        if node.name in names or node.hostname in names:
            return node
    for node in nodes:  # a node named by its short name, a host by its full one
        if node.hostname.split(".")[0] in names:
            return node
    return None


@dataclass
class _SlurmView:
    """The app's Slurm state: each cluster's last jobs (and why the last read failed),
    the poller and what wakes it early."""

    last: dict[str, tuple[list[SlurmJob], str]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: Worker[None] | None = None
    nodes: dict[str, list[SlurmNode]] = field(default_factory=dict)
    nodes_worker: Worker[None] | None = None


def rows_of(jobs: Sequence[SlurmJob]) -> list[SlurmRow]:
    from llmaos_tui.screens.requests import SlurmRow  # noqa: PLC0415

    return [SlurmRow(j.as_request(), j.nodes) for j in jobs]


class SlurmActions(App[None]):
    audit: AuditLog
    fleet: FleetState
    read_only: bool
    slurm_clients: Sequence[SlurmClient] = ()
    """The hosts file's clusters (set by the CLI before the app runs; none by default)."""
    slurm_poll_s: float = POLL_S
    slurm_nodes_poll_s: float = NODES_POLL_S

    # ------------------------------------------------------------------ state

    @property
    def _slurm(self) -> _SlurmView:
        # Made on first use: the mixin has no __init__ of its own (LlmaosApp's runs).
        view: _SlurmView | None = self.__dict__.get("_slurm_view")
        if view is None:
            view = self.__dict__["_slurm_view"] = _SlurmView()
        return view

    def slurm_client(self, host: str) -> SlurmClient | None:
        """The client of ``slurm:NAME``."""
        name = host.removeprefix(SLURM_HOST)
        return next((c for c in self.slurm_clients if c.name == name), None)

    # ------------------------------------------------------------------ polling

    def on_requests_shown(self, msg: RequestsShown) -> None:
        if not self.slurm_clients:
            return
        from llmaos_tui.screens.requests import RequestsScreen  # noqa: PLC0415

        view = self._slurm
        worker = view.worker
        if not msg.shown:
            if worker is not None:
                worker.cancel()
                view.worker = None
            return
        screen = self.screen
        if isinstance(screen, RequestsScreen):
            for name, (jobs, error) in view.last.items():  # the last known at once
                screen.refresh_slurm(name, rows_of(jobs), error)
        if worker is None or worker.is_finished:
            view.worker = self.run_worker(
                self._poll_slurm(), name="slurm-poll", group="slurm", exit_on_error=False
            )

    async def _poll_slurm(self) -> None:
        wake = self._slurm.wake

        async def one(c: SlurmClient) -> None:
            try:
                jobs = await c.jobs(finished=True)
            except _failures() as exc:
                self.post_message(SlurmJobs(c.name, None, str(exc) or type(exc).__name__))
                return
            self.post_message(SlurmJobs(c.name, jobs))

        while True:
            wake.clear()
            await asyncio.gather(*(one(c) for c in self.slurm_clients))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self.slurm_poll_s)

    def on_slurm_jobs(self, msg: SlurmJobs) -> None:
        from llmaos_tui.screens.requests import RequestsScreen  # noqa: PLC0415

        last = self._slurm.last
        if msg.jobs is not None:
            last[msg.cluster] = (list(msg.jobs), "")
        else:
            last[msg.cluster] = (last.get(msg.cluster, ([], ""))[0], msg.error)
        screen = self.screen
        if isinstance(screen, RequestsScreen) and screen.is_mounted:
            rows = None if msg.jobs is None else rows_of(msg.jobs)
            screen.refresh_slurm(msg.cluster, rows, msg.error)

    def slurm_refresh_now(self) -> None:
        """Read the clusters again now (after a change), not at the next tick."""
        self._slurm.wake.set()

    # ------------------------------------------------------------------ nodes

    def on_mount(self) -> None:
        if self.slurm_clients:
            self._slurm.nodes_worker = self.run_worker(
                self._poll_nodes(), name="slurm-nodes", group="slurm", exit_on_error=False
            )

    async def _poll_nodes(self) -> None:
        async def one(c: SlurmClient) -> None:
            try:
                nodes = await c.nodes()
            except _failures() as exc:
                self.post_message(SlurmNodes(c.name, None, str(exc) or type(exc).__name__))
                return
            self.post_message(SlurmNodes(c.name, nodes))

        while True:
            await asyncio.gather(*(one(c) for c in self.slurm_clients))
            await asyncio.sleep(self.slurm_nodes_poll_s)

    def on_slurm_nodes(self, msg: SlurmNodes) -> None:
        # A failed read keeps the cluster's last nodes: one missed answer does not blank
        # the fleet's column (the requests screen says why a cluster cannot be read).
        if msg.nodes is not None:
            self._slurm.nodes[msg.cluster] = list(msg.nodes)
        clusters = [self._slurm.nodes.get(c.name, []) for c in self.slurm_clients]
        changed = []
        for h in self.fleet.hosts.values():
            node = next((n for ns in clusters if (n := node_of(h, ns)) is not None), None)
            state = None if node is None else node.state
            if h.slurm != state:
                h.slurm = state
                changed.append(h.name)
        if changed and self.screen_stack:
            from llmaos_tui.screens.fleet import FleetScreen  # noqa: PLC0415

            screen = self.screen
            if isinstance(screen, FleetScreen) and screen.is_mounted:
                screen.refresh_hosts(changed)

    async def on_unmount(self) -> None:
        for c in self.slurm_clients:
            await c.runner.close()

    # ------------------------------------------------------------------ changes

    def slurm_change(self, intent: ChangeIntent) -> bool:
        """Carry out ``intent`` through Slurm when its host is a cluster (``slurm:NAME``);
        False (nothing done) for an agent's host. app.py's ChangeIntent handler asks this
        first."""
        if not intent.host.startswith(SLURM_HOST):
            return False
        self.run_worker(
            self._slurm_apply(intent), name=f"change:{intent.host}", group="changes",
            exit_on_error=False,
        )  # fmt: skip
        return True

    async def _slurm_apply(self, intent: ChangeIntent) -> None:
        from llmaos_tui.slurm import PrioResult  # noqa: PLC0415
        from llmaos_tui.slurm.jobs import BadSlurmId  # noqa: PLC0415

        c = self.slurm_client(intent.host)
        if c is None:
            self.notify(f"no Slurm cluster {intent.host!r}", severity="error")
            return
        try:
            act, what = self._slurm_act(c, intent)
        except (BadSlurmId, ValueError) as exc:
            self.notify(f"{intent.host}: {exc}", severity="error", timeout=8)
            return
        from llmaos_tui.slurm.audited import slurm_change  # noqa: PLC0415

        runner = c.runner
        # The app's log, with the login the cluster's commands run as (its host may be
        # no link of this console's).
        audit = AuditLog(self.audit.path, identity_for=lambda _host: runner.login)
        where = f"{intent.host} ({runner.where})"
        failures: tuple[type[BaseException], ...] = (ReadOnlyConsole, ValueError, *_failures())
        try:
            # A command that timed out is audited as unknown and shown as "may have acted".
            result = await slurm_change(
                c, intent.method, intent.target, act, audit=audit, read_only=self.read_only,
                before=intent.before,
            )  # fmt: skip
        except failures as exc:
            self.notify(f"{where}: {exc}", severity="error", timeout=8)
            return
        finally:
            self.slurm_refresh_now()
        job = result.job if isinstance(result, PrioResult) else result
        said = ""
        if isinstance(result, PrioResult):
            said = (
                f" (by Nice {job.nice}: Slurm refused {result.note})"
                if result.how == "Nice"
                else " (by Slurm's Priority)"
            )
        self.notify(f"{where}: {what} {job.id}: {job.describe()}{said}")

    def _slurm_act(
        self, c: SlurmClient, intent: ChangeIntent
    ) -> tuple[Callable[[], Awaitable[SlurmJob | PrioResult]], str]:
        """The client's call for the intent, and its verb; ValueError for a change this
        screen does not make on a Slurm job."""
        from llmaos_tui.slurm import SubmitSpec  # noqa: PLC0415
        from llmaos_tui.slurm.jobs import parse_slurm_id  # noqa: PLC0415

        verb = intent.method.removeprefix("requests.")
        p = intent.params
        if intent.method == "requests.submit" and isinstance(p, RequestSpec):
            spec = SubmitSpec(
                argv=list(p.argv), shell=p.shell, name=p.name, cpus=p.cpus, gpus=p.gpus,
                mem=p.mem, cwd=p.cwd,
                nice=-p.priority,  # the console's priority runs the other way from Nice
            )  # fmt: skip
            return (lambda: c.submit(spec)), verb
        rid = getattr(p, "id", None)
        if not isinstance(rid, str):
            raise ValueError(f"{intent.method}: not a change on a Slurm job")
        cluster, job_id = parse_slurm_id(rid)
        if cluster != c.name:
            raise ValueError(f"{rid[:100]!r} is not a job of cluster {c.name}")
        if intent.method == "requests.prio" and isinstance(p, Reprioritize):
            priority = p.priority
            return (lambda: c.prio(job_id, priority)), verb
        acts = {
            "requests.hold": c.hold, "requests.release": c.release, "requests.top": c.top,
            "requests.cancel": c.cancel,
        }  # fmt: skip
        act = acts.get(intent.method)
        if act is None:
            raise ValueError(f"{intent.method}: not a change on a Slurm job")
        return (lambda: act(job_id)), verb

    # ------------------------------------------------------------------ log

    def on_open_slurm_log(self, msg: OpenSlurmLog) -> None:
        from llmaos_tui.screens.requests import LogScreen  # noqa: PLC0415

        self.push_screen(LogScreen(msg.host, msg.rid, self._fetch_slurm_log))

    async def _fetch_slurm_log(self, host: str, query: LogQuery) -> LogChunk:
        """The end of the job's output file at the first call (Slurm's ``log``: the last
        64 KiB); after it, nothing more, only whether the job still runs (the output is
        shown once, as ``llmaos-tui log`` does for a Slurm job)."""
        c = self.slurm_client(host)
        if c is None:
            raise LinkDown(f"no Slurm cluster {host!r}")
        from llmaos_tui.slurm.jobs import parse_slurm_id  # noqa: PLC0415

        _cluster, job_id = parse_slurm_id(query.id)
        if query.offset == 0:
            tail = await c.log(job_id)
            data = tail.data or "(no output yet)\n"
            size = max(len(data.encode()), 1)
            return LogChunk(id=query.id, offset=0, next_offset=size, data=data, running=True)
        job = await c.job(job_id)
        running = job.state in ("queued", "held", "running")
        return LogChunk(
            id=query.id, offset=query.offset, next_offset=query.offset, data="", running=running
        )
