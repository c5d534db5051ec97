"""Containers: one host's Docker containers, or the whole fleet's, as lazydocker lists them.

Rows follow the agents' ``containers`` notifications (running first, then by name), with
each container's load from its host's process sampling; the table is a
:class:`SyncedTable`, so an update touches only the cells that changed and the cursor
stays on its container. ``/`` filters (every word a substring of a row's text); a click
on a header sorts by that column. Keys act on the container under
the cursor: ``s`` start, ``S`` stop, ``R`` restart (posted as :class:`ChangeIntent`, which
the app carries out through the host's agent, audited), ``l`` its log, ``m`` move it to
another host (the move dialog). A read-only console hides the keys that change anything.

Names, images, labels, engine errors and log lines are the hosts' (and the containers')
text: the table is a :class:`SafeTable` (a SyncedTable is one), the rest is drawn with
``safe`` / ``safe_log``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import RichLog, Static

from llmaos_agent.protocol import Container, ContainerLog, ContainerLogQuery, ContainerRef
from llmaos_tui.fleet.state import FleetState
from llmaos_tui.formats import error_words
from llmaos_tui.screens.dialogs import ConfirmScreen
from llmaos_tui.screens.intents import ChangeIntent
from llmaos_tui.widgets.filter_bar import FilterBar, words_match
from llmaos_tui.widgets.key_footer import KeyFooter
from llmaos_tui.widgets.synced_table import Col, Row, SyncedTable
from llmaos_tui.widgets.text import ago, safe, safe_log

STOP_GRACE = 10  # seconds a stop or restart gives the container before the kill


def uptime(c: Container, now: float | None = None) -> str:
    if c.state != "running":
        return ""
    return ago(c.started, time.time() if now is None else now)


def size(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f}{unit}"
    return str(n) if n else ""


def gpus(n: int) -> str:
    return "all" if n < 0 else str(n) if n else ""


class OpenContainerLog(Message):
    """Show the tail of a container's output."""

    def __init__(self, host: str, container: Container) -> None:
        super().__init__()
        self.host = host
        self.container = container


class OpenMove(Message):
    """Open the move dialog for ``container`` of ``host``."""

    def __init__(self, host: str, container: Container) -> None:
        super().__init__()
        self.host = host
        self.container = container


class ContainersScreen(Screen[None]):
    OPENED_BY = "containers"
    """The app action whose key opens this screen: the footer leaves it out."""
    BINDINGS = [
        Binding("escape", "back", "Back", id="containers.back"),
        Binding("s", "start", "Start", id="containers.start"),
        Binding("S", "stop", "Stop…", id="containers.stop"),
        Binding("R", "restart", "Restart…", id="containers.restart"),
        Binding("l,enter", "logs", "Logs", id="containers.logs"),
        Binding("m", "move", "Move…", id="containers.move"),
        Binding("a", "all_hosts", "All hosts", id="containers.all"),
        Binding("slash", "filter", "Filter", key_display="/", id="containers.filter"),
    ]
    CHANGES = frozenset({"start", "stop", "restart", "move"})
    DEFAULT_CSS = """
    ContainersScreen { layout: vertical; }
    ContainersScreen #title { height: 1; padding: 0 1; background: $panel; color: $text; }
    ContainersScreen #detail { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    """
    COLUMNS = (
        Col("HOST", "HOST"), Col("NAME", "NAME"), Col("IMAGE", "IMAGE"), Col("STATE", "STATE"),
        Col("HEALTH", "HEALTH"), Col("CPU", "CPU", numeric=True), Col("MEM", "MEM", numeric=True),
        Col("GPUS", "GPUS", numeric=True), Col("PORTS", "PORTS"), Col("VOLUMES", "VOLUMES"),
        Col("UP", "UP", numeric=True),
    )  # fmt: skip

    def __init__(self, fleet: FleetState, host: str | None, *, read_only: bool = False) -> None:
        super().__init__(name="containers")
        self.fleet = fleet
        self.host = host
        self.read_only = read_only
        self._rows: list[tuple[str, Container]] = []
        """The rows shown (those the filter lets through), running first, then by name."""
        self._versions: tuple[int, ...] = ()
        self.needle = ""
        self.clock: Callable[[], float] = time.time
        """What the UP column counts from (a test pins it)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        yield FilterBar("host, name, image, state, ports or volumes", id="containers-filter")
        yield SyncedTable(self.COLUMNS, id="containers-table")
        yield Static("", id="detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.refresh_containers(force=True)
        self.query_one(SyncedTable).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self.CHANGES and self.read_only)

    # ---------------------------------------------------------------- data

    def _hosts(self) -> list[str]:
        return [self.host] if self.host else list(self.fleet.hosts)

    def refresh_containers(self, force: bool = False) -> None:
        hosts = [self.fleet.hosts[h] for h in self._hosts() if h in self.fleet.hosts]
        versions = tuple(h.containers_version for h in hosts)
        if versions == self._versions and not force:
            return
        self._versions = versions
        rows = [(h.name, c) for h in hosts for c in h.containers.values()]
        rows.sort(key=lambda hc: (hc[1].state != "running", hc[1].name, hc[0]))
        running = sum(c.state == "running" for _, c in rows)
        now = self.clock()
        cells = {f"{host}/{c.id}": self._cells(host, c, now) for host, c in rows}
        shown = [(h, c) for h, c in rows if words_match(self.needle, cells[f"{h}/{c.id}"][0])]
        self._rows = shown
        where = self.host or f"all {len(hosts)} hosts"
        ro = " · read-only" if self.read_only else ""
        flt = f" · {len(shown)} shown" if self.needle else ""
        no_engine = [
            f"{h.name}: {h.hello.caps.docker_reason}"
            for h in hosts
            if h.hello is not None and not h.hello.caps.docker and h.hello.caps.docker_reason
        ]
        self.query_one("#title", Static).update(
            safe(
                f"Containers on {where} · {running} running, {len(rows) - running} stopped{flt}{ro}"
            )
        )
        self.query_one(SyncedTable).sync(
            Row(key, *cells[key][1:]) for key in (f"{h}/{c.id}" for h, c in shown)
        )
        detail = "; ".join(no_engine) if no_engine else ""
        if not rows and not detail:
            detail = "No containers."
        elif rows and not shown:
            detail = "No container matches the filter."
        self.query_one("#detail", Static).update(safe(detail))

    @staticmethod
    def _cells(
        host: str, c: Container, now: float
    ) -> tuple[list[str], Sequence[Any], Sequence[Any]]:
        """(the words the filter looks in, the cells, the values to sort by)."""
        ports, volumes, up = ", ".join(c.ports), ", ".join(c.volumes), uptime(c, now)
        words = [host, c.name, c.image, c.state, c.health or "", ports, volumes]
        cells = (
            host, c.name, c.image, c.state, c.health or "",
            Text(f"{c.cpu:.2f}", justify="right"), Text(size(c.mem), justify="right"),
            Text(gpus(c.gpus), justify="right"), ports, volumes, up,
        )  # fmt: skip
        started = c.started if c.state == "running" and c.started else None
        sort = (host, c.name, c.image, c.state, c.health or "", c.cpu, c.mem, c.gpus, ports,
                volumes, None if started is None else now - started)  # fmt: skip
        return words, cells, sort

    def _selected_key(self) -> str | None:
        return self.query_one(SyncedTable).selected_key

    def selected(self) -> tuple[str, Container] | None:
        key = self._selected_key()
        for host, c in self._rows:
            if f"{host}/{c.id}" == key:
                return host, c
        return None

    # ------------------------------------------------------------- actions

    def _intent(self, verb: str, host: str, c: Container) -> None:
        ref = ContainerRef(id=c.id, timeout=STOP_GRACE)
        self.post_message(
            ChangeIntent(host, f"containers.{verb}", ref, f"container {c.name}", c.state)
        )

    def action_start(self) -> None:
        sel = self.selected()
        if sel is not None:
            self._intent("start", *sel)

    def _confirmed(self, verb: str) -> None:
        sel = self.selected()
        if sel is None:
            return
        host, c = sel

        def answered(yes: bool | None) -> None:
            if yes:
                self._intent(verb, host, c)

        self.app.push_screen(
            ConfirmScreen(f"{verb.capitalize()} {c.name} on {host}? "
                          f"(SIGTERM, then SIGKILL after {STOP_GRACE} s)"),
            answered,
        )  # fmt: skip

    def action_stop(self) -> None:
        self._confirmed("stop")

    def action_restart(self) -> None:
        self._confirmed("restart")

    def action_logs(self) -> None:
        sel = self.selected()
        if sel is not None:
            self.post_message(OpenContainerLog(*sel))

    def action_move(self) -> None:
        sel = self.selected()
        if sel is not None:
            self.post_message(OpenMove(*sel))

    def action_all_hosts(self) -> None:
        self.host = None
        self.refresh_containers(force=True)

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()

    def on_filter_bar_filtered(self, event: FilterBar.Filtered) -> None:
        self.needle = event.value
        self.refresh_containers(force=True)

    def on_filter_bar_done(self, _event: FilterBar.Done) -> None:
        self.query_one(SyncedTable).focus()

    def action_back(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.active:  # the first Esc clears a kept filter
            bar.clear_filter()
            return
        self.dismiss()


class ContainerLogArrived(Message):
    def __init__(self, log: ContainerLog | None, error: str = "") -> None:
        super().__init__()
        self.log = log
        self.error = error


class ContainerLogScreen(Screen[None]):
    """The last lines of a container's output; ``r`` reads them again."""

    BINDINGS = [
        Binding("escape,q", "back", "Back", id="containerlog.back"),
        Binding("r", "reload", "Reload", id="containerlog.reload"),
    ]
    DEFAULT_CSS = """
    ContainerLogScreen #title { height: 1; padding: 0 1; background: $panel; }
    ContainerLogScreen RichLog { height: 1fr; }
    """
    TAIL = 500

    def __init__(
        self,
        host: str,
        container: Container,
        fetch: Callable[[str, ContainerLogQuery], Awaitable[ContainerLog]],
    ) -> None:
        super().__init__(name="containerlog")
        self.host, self.container, self.fetch = host, container, fetch

    def compose(self) -> ComposeResult:
        title = f"Output of {self.container.name} on {self.host} (last {self.TAIL} lines)"
        yield Static(safe(title), id="title")
        yield RichLog(id="log", wrap=False, markup=False, highlight=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.load()

    @work(exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        query = ContainerLogQuery(id=self.container.id, tail=self.TAIL)
        try:
            log = await self.fetch(self.host, query)
        except Exception as exc:  # noqa: BLE001 - whatever the fetcher raised is shown here
            self.post_message(ContainerLogArrived(None, error_words(exc, self.host)))
            return
        self.post_message(ContainerLogArrived(log))

    def on_container_log_arrived(self, msg: ContainerLogArrived) -> None:
        log = self.query_one(RichLog)
        log.clear()
        if msg.log is None:
            log.write(safe(f"[log unavailable: {msg.error}]", style="italic"))
            return
        if msg.log.truncated:
            log.write(Text("[older output cut]", style="italic"))
        log.write(safe_log(msg.log.data.rstrip("\n")) if msg.log.data else Text("[no output]"))

    def action_reload(self) -> None:
        self.load()

    def action_back(self) -> None:
        self.dismiss()
