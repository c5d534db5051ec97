"""Requests: every host's queue (or one host's), re-prioritised from the keyboard.

Rows: running first, then waiting by priority and FIFO position, then held, then
the recently finished. Keys act on the request under the cursor and post
:class:`ChangeIntent` for the app to carry out; the table follows the agents'
``requests`` notifications, so changes made from other consoles show up live. The
table is a :class:`SyncedTable`: an update touches only the cells that changed and the
cursor stays on its request. ``/`` filters (every word a substring of a row's text); a
click on a header sorts by that column.

Names, argv, reasons and log lines are the hosts' text: the table is a
:class:`SafeTable` (a SyncedTable is one), titles and notes are drawn with ``safe`` and
the log with ``safe_log`` (control characters as escapes, never markup). A host whose
agent says its queue is unavailable (hello caps) is named, with the reason, under the
title.

Slurm clusters of the hosts file show their jobs here too, under the host label
``slurm:NAME`` (ids ``slurm:NAME:JOBID``): the app polls each cluster while this screen is
open and gives the rows to :meth:`RequestsScreen.refresh_slurm`; the same keys act on them
(the app routes an intent whose host is ``slurm:...`` to Slurm's commands). A cluster that
cannot be read is named, with Slurm's or the link's words, under the title.

Ages keep counting between the agents' notifications: once a second the rows are given
to the table again with a fresh clock, and the table redraws only the AGE cells that
moved (the same only-changed-cells path as a queue change).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple

import msgspec
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Checkbox, DataTable, Input, Label, RichLog, Static

from llmaos_agent.protocol import (
    LogChunk,
    LogQuery,
    Reprioritize,
    RequestInfo,
    RequestRef,
    RequestSpec,
)
from llmaos_tui.fleet.state import FleetState, HostState
from llmaos_tui.formats import error_words, wire_words
from llmaos_tui.screens.dialogs import ConfirmScreen
from llmaos_tui.screens.intents import ChangeIntent
from llmaos_tui.widgets.filter_bar import FilterBar, words_match
from llmaos_tui.widgets.key_footer import KeyFooter
from llmaos_tui.widgets.synced_table import Col, Row, SyncedTable
from llmaos_tui.widgets.text import ago, safe, safe_log

PRIORITY_STEP = 10
"""What ``+`` and ``-`` add: one nice step for a running request (DESIGN: 10 per step)."""
SLURM_HOST = "slurm:"
"""The host label of a Slurm cluster's rows (``slurm:NAME``); no inventory host has a
``:`` in its name, so the label cannot be taken by a host."""
WAITING = ("queued", "held")
ORDER = {"running": 0, "queued": 1, "held": 2}


class SlurmRow(NamedTuple):
    """One job of a Slurm cluster as this screen draws it: the job as a request record
    (its owner the Slurm user, its reason where it runs or why it waits) and its nodes."""

    info: RequestInfo
    nodes: int


def is_slurm_host(host: str) -> bool:
    return host.startswith(SLURM_HOST)


def queue_notes(hosts: Iterable[HostState]) -> list[str]:
    """ "HOST: queue unavailable: REASON" for each host whose agent says its request queue
    cannot be used (its hello's caps), in words to show as they are (cleaned by the
    caller)."""
    return [
        f"{h.name}: queue unavailable: {h.hello.caps.queue_reason or 'no reason given'}"
        for h in hosts
        if h.hello is not None and not h.hello.caps.queue
    ]


def _sort_key(r: RequestInfo) -> tuple[int, int, int, float]:
    if r.state in ORDER:
        return (ORDER[r.state], -r.priority, r.seq, 0.0)
    return (3, 0, 0, -(r.ended or 0.0))


def _cells(
    host: str, r: RequestInfo, now: float, nodes: int | None = None
) -> tuple[list[str], Sequence[Any], Sequence[Any]]:
    """(the words the filter looks in, the cells, the values to sort by) of a row;
    ``nodes`` only for a Slurm job (an agent's request runs on its host)."""
    # A Slurm job's age counts from its submission (squeue gives no start here).
    since = r.started if r.state == "running" and r.started else r.submitted
    words = [host, r.id, r.state, r.name, r.owner, r.reason]
    cells = (
        host, r.id, r.state, r.name, r.owner, Text(str(r.priority), justify="right"),
        Text(str(r.cpus), justify="right"), Text(str(r.gpus), justify="right"),
        Text("" if nodes is None else str(nodes), justify="right"), ago(since, now), r.reason,
    )  # fmt: skip
    age = now - since if since else None
    sort = (host, r.id, r.state, r.name, r.owner, r.priority, r.cpus, r.gpus, nodes, age,
            r.reason)  # fmt: skip
    return words, cells, sort


class RequestsScreen(Screen[None]):
    OPENED_BY = "requests"
    """The app action whose key opens this screen: the footer leaves it out."""
    BINDINGS = [
        Binding("escape", "back", "Back", id="requests.back"),
        Binding("plus,equals_sign", "priority(1)", "Prio +", key_display="+", id="requests.raise"),
        Binding("minus", "priority(-1)", "Prio -", key_display="-", id="requests.lower"),
        Binding("t", "top", "Top", id="requests.top"),
        Binding("h", "hold", "Hold/release", id="requests.hold"),
        Binding("c", "cancel", "Cancel…", id="requests.cancel"),
        Binding("l,enter", "log", "Log", id="requests.log"),
        Binding("n", "new", "New…", id="requests.new"),
        Binding("a", "all_hosts", "All hosts", id="requests.all"),
        Binding("slash", "filter", "Filter", key_display="/", id="requests.filter"),
    ]
    CHANGES = frozenset({"priority", "top", "hold", "cancel", "new"})
    AGE_TICK_S = 1.0
    """How often the AGE cells are brought up to date (top's and docker ps's resolution)."""
    DEFAULT_CSS = """
    RequestsScreen { layout: vertical; }
    RequestsScreen #title { height: 1; padding: 0 1; background: $panel; color: $text; }
    RequestsScreen #queue-note { height: auto; padding: 0 1; color: $warning; display: none; }
    RequestsScreen #queue-note.-shown { display: block; }
    """
    # id, state and name first: at 80 columns they stay in view beside a Slurm cluster's
    # host label and ids (``slurm:NAME``, ``slurm:NAME:JOBID``); the numbers follow.
    COLUMNS = (
        Col("HOST", "HOST"), Col("ID", "ID"), Col("STATE", "STATE"), Col("NAME", "NAME"),
        Col("USER", "USER"), Col("PRIO", "PRIO", numeric=True),
        Col("CPUS", "CPUS", numeric=True), Col("GPUS", "GPUS", numeric=True),
        Col("NODES", "NODES", numeric=True), Col("AGE", "AGE", numeric=True),
        Col("WHERE / WHY", "WHERE / WHY"),
    )  # fmt: skip

    def __init__(self, fleet: FleetState, host: str | None, *, read_only: bool = False) -> None:
        super().__init__(name="requests")
        self.fleet = fleet
        self.host = host
        self.read_only = read_only
        self._rows: list[tuple[str, RequestInfo]] = []
        self._versions: tuple[int, ...] = ()
        # Each Slurm cluster's last rows and why it could not be read ("" when it could).
        self._slurm: dict[str, tuple[list[SlurmRow], str]] = {}
        self._job_nodes: dict[str, int] = {}  # a Slurm job's nodes, by its id
        # Priorities asked for but not yet reported back: a second + before the agent's
        # answer arrives builds on the first, not on the stale row.
        self._asked: dict[str, int] = {}
        self.needle = ""
        self.clock: Callable[[], float] = time.time
        """What the AGE column counts from (a test pins it)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        yield Static("", id="queue-note")
        yield FilterBar("host, id, state, name or where/why", id="requests-filter")
        yield SyncedTable(self.COLUMNS, id="requests-table")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.refresh_requests(force=True)
        self.query_one(SyncedTable).focus()
        self.set_interval(self.AGE_TICK_S, self.tick_ages, name="request ages")

    # The app polls the Slurm clusters only while this screen is on top (each poll runs
    # squeue on a login host): it is told here, to the app itself (a screen that is going
    # away cannot forward a message).
    def on_screen_resume(self) -> None:
        self.app.post_message(RequestsShown(True))

    def on_screen_suspend(self) -> None:
        self.app.post_message(RequestsShown(False))

    def on_unmount(self) -> None:
        self.app.post_message(RequestsShown(False))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self.CHANGES and self.read_only)

    # ---------------------------------------------------------------- data

    def _hosts(self) -> list[str]:
        return [self.host] if self.host else list(self.fleet.hosts)

    def refresh_slurm(self, cluster: str, rows: Sequence[SlurmRow] | None, error: str = "") -> None:
        """A Slurm cluster's jobs (None with ``error``: it could not be read, and the rows
        shown last stay, as the agents' do while a link is down)."""
        kept = self._slurm.get(cluster, ([], ""))[0]
        self._slurm[cluster] = (kept if rows is None else list(rows), error)
        self.refresh_requests(force=True)

    def _slurm_rows(self) -> list[tuple[str, RequestInfo]]:
        out = []
        for cluster, (rows, _) in self._slurm.items():
            host = f"{SLURM_HOST}{cluster}"
            if self.host is not None and self.host != host:
                continue
            for row in rows:
                self._job_nodes[row.info.id] = row.nodes
                out.append((host, row.info))
        return out

    def refresh_requests(self, force: bool = False) -> None:
        hosts = [self.fleet.hosts[h] for h in self._hosts() if h in self.fleet.hosts]
        versions = tuple(h.requests_version for h in hosts)
        if versions == self._versions and not force:
            return
        self._versions = versions
        rows = [(h.name, r) for h in hosts for r in h.requests.values()]
        self._job_nodes = {}
        rows += self._slurm_rows()
        for _, r in rows:
            if self._asked.get(r.id) == r.priority:
                del self._asked[r.id]
        rows.sort(key=lambda hr: _sort_key(hr[1]))
        now = self.clock()
        cells = {f"{h}/{r.id}": _cells(h, r, now, self._job_nodes.get(r.id)) for h, r in rows}
        shown = [(h, r) for h, r in rows if words_match(self.needle, cells[f"{h}/{r.id}"][0])]
        self._rows = shown
        waiting = sum(r.state in WAITING for _, r in rows)
        running = sum(r.state == "running" for _, r in rows)
        clusters = [c for c in self._slurm if self.host in (None, f"{SLURM_HOST}{c}")]
        where = self.host or f"all {len(hosts)} hosts"
        if clusters and self.host is None:
            where += f" and Slurm {', '.join(clusters)}"
        ro = " · read-only" if self.read_only else ""
        flt = f" · {len(shown)} shown" if self.needle else ""
        self.query_one("#title", Static).update(
            safe(f"Requests on {where} · {running} running, {waiting} waiting{flt}{ro}")
        )
        notes = queue_notes(hosts) + [
            f"{SLURM_HOST}{c}: {self._slurm[c][1]}" for c in clusters if self._slurm[c][1]
        ]
        note = self.query_one("#queue-note", Static)
        note.update(safe("; ".join(notes)))
        note.set_class(bool(notes), "-shown")
        self.query_one(SyncedTable).sync(
            Row(key, *cells[key][1:]) for key in (f"{h}/{r.id}" for h, r in shown)
        )

    def tick_ages(self) -> None:
        """The rows shown, again, at the clock's time now: only their AGE cells differ, so
        only those are redrawn (and the rows move only when the table is sorted by age)."""
        now = self.clock()
        self.query_one(SyncedTable).sync(
            Row(f"{h}/{r.id}", *_cells(h, r, now, self._job_nodes.get(r.id))[1:])
            for h, r in self._rows
        )

    def _selected_key(self) -> str | None:
        return self.query_one(SyncedTable).selected_key

    def selected(self) -> tuple[str, RequestInfo] | None:
        key = self._selected_key()
        for host, r in self._rows:
            if f"{host}/{r.id}" == key:
                return host, r
        return None

    # ------------------------------------------------------------- actions

    def _intent(self, host: str, method: str, params: msgspec.Struct, r: RequestInfo) -> None:
        before = f"{r.state} priority {r.priority}"
        self.post_message(ChangeIntent(host, method, params, f"request {r.id}", before))

    def action_priority(self, sign: int) -> None:
        sel = self.selected()
        if sel is None:
            return
        host, r = sel
        base = self._asked.get(r.id, r.priority)
        if is_slurm_host(host):
            # Slurm's priorities are its own scale, from 1 up (0 is its hold).
            new = max(1, base + sign * PRIORITY_STEP)
        else:
            new = max(-1000, min(1000, base + sign * PRIORITY_STEP))
        if new != base:
            self._asked[r.id] = new
            self._intent(host, "requests.prio", Reprioritize(id=r.id, priority=new), r)

    def action_top(self) -> None:
        sel = self.selected()
        if sel is not None:
            self._intent(sel[0], "requests.top", RequestRef(id=sel[1].id), sel[1])

    def action_hold(self) -> None:
        sel = self.selected()
        if sel is not None:
            method = "requests.release" if sel[1].state == "held" else "requests.hold"
            self._intent(sel[0], method, RequestRef(id=sel[1].id), sel[1])

    def action_cancel(self) -> None:
        sel = self.selected()
        if sel is None:
            return
        host, r = sel

        def answered(yes: bool | None) -> None:
            if yes:
                self._intent(host, "requests.cancel", RequestRef(id=r.id), r)

        if is_slurm_host(host):
            what = "scancel"
        elif r.state == "running":
            what = "SIGTERM, then SIGKILL"
        else:
            what = "remove it from the queue"
        self.app.push_screen(
            ConfirmScreen(f"Cancel {r.id} ({r.name}) on {host}? ({what})"), answered
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # The table takes Enter for itself (select the row); here Enter opens the log, as
        # the footer's "l,enter" binding says.
        event.stop()
        self.action_log()

    def action_log(self) -> None:
        sel = self.selected()
        if sel is not None:
            host, rid = sel[0], sel[1].id
            # A Slurm job's output is read through Slurm (the app's Slurm side), not an agent.
            msg = OpenSlurmLog(host, rid) if is_slurm_host(host) else OpenLog(host, rid)
            self.post_message(msg)

    def action_new(self) -> None:
        sel = self.selected()
        host = self.host or (sel[0] if sel else next(iter(self.fleet.hosts), None))
        if host is None:
            return

        def submitted(spec: RequestSpec | None) -> None:
            if spec is not None:
                target = f"request: {' '.join(spec.argv)[:200]}"
                self.post_message(ChangeIntent(host, "requests.submit", spec, target))

        self.app.push_screen(SubmitScreen(host), submitted)

    def action_all_hosts(self) -> None:
        self.host = None
        self.refresh_requests(force=True)

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def on_filter_bar_filtered(self, event: FilterBar.Filtered) -> None:
        self.needle = event.value
        self.refresh_requests(force=True)

    def on_filter_bar_done(self, _event: FilterBar.Done) -> None:
        self.query_one(SyncedTable).focus()

    def action_back(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.active:  # the first Esc clears a kept filter
            bar.clear_filter()
            return
        self.dismiss()


class RequestsShown(Message):
    """The requests screen came on top (``shown``) or went under or away: the app polls
    the Slurm clusters only while it is shown."""

    def __init__(self, shown: bool) -> None:
        super().__init__()
        self.shown = shown


class OpenLog(Message):
    """Show an agent's request's output."""

    def __init__(self, host: str, rid: str) -> None:
        super().__init__()
        self.host = host
        self.rid = rid


class OpenSlurmLog(Message):
    """Show a Slurm job's output (``host`` ``slurm:NAME``, ``rid`` ``slurm:NAME:JOBID``):
    read from the job's output file through Slurm, not from an agent."""

    def __init__(self, host: str, rid: str) -> None:
        super().__init__()
        self.host = host
        self.rid = rid


class LogArrived(Message):
    def __init__(self, chunk: LogChunk | None, error: str = "") -> None:
        super().__init__()
        self.chunk = chunk
        self.error = error


class LogScreen(Screen[None]):
    """A request's output, followed while it runs (as ``tail -f``)."""

    BINDINGS = [Binding("escape,q", "back", "Back", id="log.back")]
    DEFAULT_CSS = """
    LogScreen #title { height: 1; padding: 0 1; background: $panel; }
    LogScreen RichLog { height: 1fr; }
    """

    def __init__(
        self, host: str, rid: str, fetch: Callable[[str, LogQuery], Awaitable[LogChunk]]
    ) -> None:
        super().__init__(name="log")
        self.host, self.rid, self.fetch = host, rid, fetch

    def compose(self) -> ComposeResult:
        yield Static(safe(f"Output of {self.rid} on {self.host}"), id="title")
        yield RichLog(id="log", wrap=False, markup=False, highlight=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.follow()

    @work(exclusive=True, exit_on_error=False)
    async def follow(self) -> None:
        import asyncio  # noqa: PLC0415

        offset = 0
        while True:
            try:
                chunk = await self.fetch(self.host, LogQuery(id=self.rid, offset=offset))
            except Exception as exc:  # noqa: BLE001 - whatever the fetcher raised is shown here
                self.post_message(LogArrived(None, error_words(exc, self.host)))
                return
            self.post_message(LogArrived(chunk))
            offset = chunk.next_offset
            if chunk.data:
                continue
            if not chunk.running:
                return
            await asyncio.sleep(1.0)

    def on_log_arrived(self, msg: LogArrived) -> None:
        log = self.query_one(RichLog)
        if msg.chunk is None:
            log.write(safe(f"[log unavailable: {msg.error}]", style="italic"))
            return
        if msg.chunk.data:
            log.write(safe_log(msg.chunk.data.rstrip("\n")))
        if not msg.chunk.running and not msg.chunk.data:
            title = f"Output of {self.rid} on {self.host} (ended)"
            self.query_one("#title", Static).update(safe(title))

    def action_back(self) -> None:
        self.dismiss()


class SubmitScreen(ModalScreen[RequestSpec | None]):
    """A form for a new request on one host; Enter submits, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="submit.cancel")]
    DEFAULT_CSS = """
    SubmitScreen { align: center middle; }
    SubmitScreen > Vertical {
        width: 76; height: auto; border: round $primary; background: $surface; padding: 0 1;
    }
    SubmitScreen Horizontal { height: auto; }
    SubmitScreen Horizontal > Vertical { width: 1fr; height: auto; }
    SubmitScreen .field-label { color: $text-muted; padding: 0 1; }
    SubmitScreen #error { color: $error; height: auto; }
    """
    FIELDS = (
        ("priority", "Priority", "0", "-1000 to 1000"),
        ("cpus", "Cores", "1", "cores"),
        ("gpus", "GPUs", "0", "GPUs"),
        ("mem", "Memory", "", "8G"),
    )
    """The row of small fields: (id, label, start value, placeholder)."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(safe(f"New request on {self.host}"))
            # Every input has its label above it: a placeholder goes once the field has a
            # value, and priority 0 or cores 1 alone do not say which is which.
            yield Label("Command", id="command-label", classes="field-label")
            yield Input(placeholder="e.g. python serve.py --port 8000", id="command")
            with Horizontal():
                for wid, label, value, hint in self.FIELDS:
                    with Vertical():
                        yield Label(label, id=f"{wid}-label", classes="field-label")
                        yield Input(value=value, placeholder=hint, id=wid)
            yield Label("Name (optional)", id="name-label", classes="field-label")
            yield Input(placeholder="shown in the table", id="name")
            yield Checkbox("through the shell (the command is one shell string)", id="shell")
            yield Static("", id="error")

    def on_mount(self) -> None:
        for i in self.query(Input):
            i.cursor_blink = getattr(self.app, "cursor_blink", True)
        self.query_one("#command", Input).focus()

    def _value(self, wid: str) -> str:
        return self.query_one(f"#{wid}", Input).value.strip()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        try:
            spec = self._spec()
        except ValueError as exc:
            self.query_one("#error", Static).update(safe(str(exc)))
            return
        self.dismiss(spec)

    def _spec(self) -> RequestSpec:
        command = self._value("command")
        shell = self.query_one(Checkbox).value
        if not command:
            raise ValueError("give a command")
        try:
            argv = [command] if shell else shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"command: {exc}") from None
        nums = {}
        labels = {wid: label for wid, label, _, _ in self.FIELDS}
        for f in ("priority", "cpus", "gpus"):
            try:
                nums[f] = int(self._value(f) or "0")
            except ValueError:  # named as its label says
                raise ValueError(f"{labels[f].lower()}: a whole number") from None
        spec = RequestSpec(
            argv=argv, shell=shell, name=self._value("name"), mem=_size(self._value("mem")),
            priority=nums["priority"], cpus=nums["cpus"], gpus=nums["gpus"],
        )  # fmt: skip
        try:  # the wire's bounds, as the agent will check them
            return msgspec.json.decode(msgspec.json.encode(spec), type=RequestSpec)
        except msgspec.ValidationError as exc:
            raise ValueError(wire_words(str(exc))) from None

    def action_cancel(self) -> None:
        self.dismiss(None)


def _size(text: str) -> int:
    if not text:
        return 0
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.upper().removesuffix("B").removesuffix("I")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise ValueError(f"memory: {text!r} is not a size such as 512M or 8G") from None
