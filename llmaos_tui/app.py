"""The Textual console: fleet and host screens over the headless fleet core.

Each host's watcher runs as an async worker on the app's event loop; it only
updates the host's state and posts :class:`HostChanged`. The app coalesces those
into one redraw of what is on screen, so a busy fleet costs one pass per burst.

Start-up draws this machine's first screen before anything else is imported: the SSH
link, the ops layer (engines, moves, their journal) and the screens not shown at start are
imported when first used, and the first sample with processes of the host on screen is
drawn as it comes, not after the coalescing wait (docs/BENCHMARKS.md, start-up).

Notifications carry the hosts' text (an agent's error, a request's name, a container
move's summary): :meth:`LlmaosApp.notify` is their one way out, cleaned and never read
as markup, whichever screen or worker raised them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.worker import Worker

from llmaos_agent.protocol import (
    NOT_FOUND,
    Change,
    ContainerLog,
    ContainerLogQuery,
    LogChunk,
    LogQuery,
    ProcDetailQuery,
    RequestInfo,
)
from llmaos_agent.protocol import ProcDetail as ProcAnswer
from llmaos_agent.safetext import clean
from llmaos_tui import settings as saved_settings
from llmaos_tui import theming
from llmaos_tui.fleet.link import Link, LinkDown
from llmaos_tui.fleet.session import CallError
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.fleet.watcher import HostWatcher
from llmaos_tui.ops.audit import AuditLog, identity_of
from llmaos_tui.ops.changes import ReadOnlyConsole, change, describe
from llmaos_tui.plan_actions import PlanActions
from llmaos_tui.screens.fleet import FleetScreen, link_facts
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.intents import ChangeIntent, OpenRequests
from llmaos_tui.screens.keys import KeysScreen
from llmaos_tui.screens.plan import OpenPlan, PlanScreen
from llmaos_tui.slurm_actions import SlurmActions
from llmaos_tui.widgets.filter_bar import FilterBar
from llmaos_tui.widgets.host_table import HostTable
from llmaos_tui.widgets.process_table import COLUMNS, ProcessTable

# Imported where first used, not here: not needed to draw the first screen (asyncssh
# alone, under the SSH link and the engine pool, took longer to import than Textual).
if TYPE_CHECKING:  # the docker SDK is optional: loaded on the first container move
    from llmaos_tui.exporter import Listen, MetricsServer
    from llmaos_tui.fleet.ssh import HostKeyQuestion
    from llmaos_tui.ops.container_move import Progress
    from llmaos_tui.ops.docker_forward import Engine
    from llmaos_tui.ops.engine_pool import EnginePool
    from llmaos_tui.ops.journal import MoveJournal
    from llmaos_tui.ops.moves import Moves
    from llmaos_tui.screens.containers import OpenContainerLog, OpenMove
    from llmaos_tui.screens.move import (
        MoveIntent,
        MovePlanQuery,
        MoveTargetsQuery,
    )
    from llmaos_tui.screens.proc_detail import OpenProcDetail, ProcDetailScreen
    from llmaos_tui.screens.proc_detail_model import ProcDetail
    from llmaos_tui.screens.requests import OpenLog

COALESCE_S = 0.05
FLEET_COALESCE_S = 0.15
"""The fleet views redraw at most about 7 times a second: with many hosts a sample arrives
every few ms, and drawing is the console's main cost. Each cell still changes at most once
a second (its host's sample rate; DESIGN: at most 1 Hz). 150 ms keeps the sample-to-screen
p99 under 250 ms with 200 hosts drawn, at about 22-24% of a core (250 ms: p99 about
320 ms at 17-18%; docs/BENCHMARKS.md)."""
CONTAINER_CALL_TIMEOUT = 60.0  # a stop or restart waits out the container's grace first
RECOVER_AFTER_S = 2.0  # one host's screen: the move recovery starts at the latest then
RECOVER_WAIT_S = 60.0  # how long unfinished moves wait for their hosts to come up
DETAIL_EVERY_S = 2.0
"""A process's detail is asked again at most this often while its screen is on top (a
``proc.detail`` reads a dozen /proc files on the host; the sample itself every second)."""
DETAIL_POINTS = 300
"""Points of a detail screen's CPU and memory graphs (one per process pass)."""


class HostChanged(Message):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class ProcDetailReady(Message):
    """A process's detail came (from a worker): the app pushes its screen."""

    def __init__(self, view: DetailView) -> None:
        super().__init__()
        self.view = view


@dataclasses.dataclass
class DetailView:
    """The open detail screen's process and what the app keeps for it: its CPU and RSS
    history, from the host's process table since the screen opened (the console keeps no
    per-process history), and when ``proc.detail`` was last asked."""

    host: str
    pid: int
    create_time: float
    detail: ProcDetail
    screen: ProcDetailScreen | None = None
    cpu: deque[float | None] = dataclasses.field(
        default_factory=lambda: deque(maxlen=DETAIL_POINTS)
    )
    mem: deque[float | None] = dataclasses.field(
        default_factory=lambda: deque(maxlen=DETAIL_POINTS)
    )
    procs_version: int = -1
    asked: float = 0.0  # time.monotonic() of the last call
    asking: bool = False

    def with_history(self) -> ProcDetail:
        return dataclasses.replace(
            self.detail, cpu_history=tuple(self.cpu), mem_history=tuple(self.mem)
        )


def _points() -> deque[float | None]:
    return deque(maxlen=DETAIL_POINTS)


class TrustRequest(Message):
    """A link met an unknown host key; the operator answers through ``answer``."""

    def __init__(self, question: HostKeyQuestion, answer: asyncio.Future[bool]) -> None:
        super().__init__()
        self.question = question
        self.answer = answer


class LlmaosApp(PlanActions, SlurmActions):
    TITLE = "llmaos-tui"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "keys", "Help", key_display="?", id="app.keys"),
        # htop's keys beside ours (their own ids, so remapping one leaves the other).
        Binding("f1", "keys", "Help", show=False, id="app.help_f1"),
        Binding("f10", "quit", "Quit", show=False, id="app.quit_f10"),
        Binding("f3", "filter", "Filter", show=False, id="app.filter_f3"),
        Binding("f", "fleet", "Fleet", show=False, id="app.fleet"),
        Binding("r", "requests", "Requests", id="app.requests"),
        Binding("c", "containers", "Containers", id="app.containers"),
        Binding("A", "audit", "Audit log", show=False, id="app.audit"),
        # A host held down (a refused login or host key) is tried again only when asked.
        Binding("R", "retry_hosts", "Retry hosts", show=False, id="app.retry"),
    ]

    def __init__(
        self,
        links: Sequence[Link],
        *,
        theme: str | None = None,
        read_only: bool = False,
        keymap: dict[str, str] | None = None,
        cursor_blink: bool = True,
        theme_dirs: list[Path] | None = None,
        audit: AuditLog | None = None,
        journal: MoveJournal | None = None,
        settings_path: Path | None = None,
        screenshot_dir: Path | None = None,
        metrics: Listen | None = None,
    ) -> None:
        super().__init__()
        self._metrics_listen = metrics
        self._metrics: MetricsServer | None = None
        self.audit = audit or AuditLog()
        # Beside the audit log (both in the state directory by default).
        self.read_only = read_only
        self.cursor_blink = cursor_blink
        self.fleet = FleetState()
        self.watchers = [
            HostWatcher(self.fleet.add(link.name), link, self._host_changed) for link in links
        ]
        self.by_name = {w.state.name: w for w in self.watchers}
        if self.audit.identity_for is None:
            self.audit.identity_for = identity_of({w.state.name: w.link for w in self.watchers})
        self._engines: EnginePool | None = None
        self._moves: Moves | None = None
        self._journal = journal
        # An SshLink exists only once its module is loaded (a local fleet never loads it).
        ssh = sys.modules.get("llmaos_tui.fleet.ssh")
        for link in links:
            if ssh is not None and isinstance(link, ssh.SshLink) and link.ask is None:
                link.ask = self.ask_trust
        self._themes, self.config_errors = theming.load_themes(theme_dirs)
        # Remembered between runs only where asked (the CLI gives the config dir's file).
        self.settings_path = settings_path
        self.screenshot_dir = screenshot_dir or self.audit.path.parent / "screenshots"
        self.settings = saved_settings.Settings()
        if settings_path is not None:
            self.settings, problems = saved_settings.load(settings_path)
            self.config_errors.extend(problems)
        self._saved = self.settings
        self._unrestored: set[Screen[None]] = set()  # not read until restored
        self._theme_name = theme or self.settings.theme or theming.DEFAULT_THEME
        self._start_theme()
        self._keymap = keymap or {}
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._link_workers: list[Worker[None]] = []
        self._hosts_changed = asyncio.Event()  # set on every host's news (recovery waits)
        self._trust_waiting: list[TrustRequest] = []  # the first one is on screen
        self._first_drawn: set[str] = set()  # hosts whose first processes were drawn
        self._recovery_started = False  # the move recovery runs once, after the first screen
        self._detail: DetailView | None = None  # the last process detail opened

    @property
    def engines(self) -> EnginePool:
        """Each host's Docker engine, reached over its link (made on first use)."""
        if self._engines is None:
            from llmaos_tui.ops.engine_pool import EnginePool  # noqa: PLC0415

            self._engines = EnginePool(self._link_of, self.fleet.hosts.get)
        return self._engines

    @property
    def moves(self) -> Moves:
        """Every container move, plan or recovery goes through this one service (made on
        first use; the engines only once a move needs one)."""
        if self._moves is None:
            from llmaos_tui.ops.moves import Moves  # noqa: PLC0415

            self._moves = Moves(
                self._engine, self.audit, close_engines=self._close_engines,
                move_engines=self._move_engines,
                read_only=self.read_only, journal=self._journal,
                journal_path=self.audit.path.parent / "moves.sqlite",
            )  # fmt: skip
        return self._moves

    async def _engine(self, host: str) -> Engine:
        return await self.engines.get(host)

    def _move_engines(
        self, source: str, target: str
    ) -> contextlib.AbstractAsyncContextManager[tuple[Engine, Engine]]:
        return self.engines.for_move(source, target)

    async def _close_engines(self) -> None:
        if self._engines is not None:
            await self._engines.aclose()

    # ---------------------------------------------------------------- life

    def _start_theme(self) -> None:
        """The theme the console starts in, set before anything is styled.

        Set in ``on_mount`` (``self.theme = ...``), the theme's watcher re-parsed every
        stylesheet and restyled every node once the screens were up (``refresh_css``,
        before the first frame). Here it is what Textual does with its own default
        theme: the App's stylesheet, made in ``App.__init__`` and not parsed yet, takes
        this theme's variables; the theme classes and the ANSI filter follow it."""
        for t in self._themes.values():
            self.register_theme(t)
        if self._theme_name not in self.available_themes:
            self.config_errors.append(
                f"no theme {self._theme_name!r}; have {', '.join(sorted(self.available_themes))}"
            )
            self._theme_name = theming.DEFAULT_THEME
        self.set_reactive(App.theme, self._theme_name)
        dark = self.current_theme.dark
        classes = {name: False for name in self.classes if name.startswith("-theme-")}
        classes |= {f"-theme-{self._theme_name}": True, "-dark-mode": dark, "-light-mode": not dark}
        self.update_classes(classes, update=False)
        self._refresh_truecolor_filter(self.ansi_theme)
        self.stylesheet.set_variables(self.get_css_variables())

    def on_mount(self) -> None:
        if self._keymap:
            self.set_keymap(self._keymap)
        # Which hosts stream their processes follows the screen on top.
        self.screen_change_signal.subscribe(self, self._screen_changed)
        fleet = FleetScreen(self.fleet, link_facts(w.link for w in self.watchers))
        self.push_screen(fleet)
        self._unrestored.add(fleet)
        self.call_after_refresh(self._restore_fleet, fleet)
        if len(self.fleet.hosts) == 1:  # one host: straight to it, Esc shows the fleet
            self.open_host(next(iter(self.fleet.hosts)))
        self._link_workers = [
            self.run_worker(
                w.run(), name=f"link:{w.state.name}", group="links", exit_on_error=False
            )
            for w in self.watchers
        ]
        self.ticker = self.set_interval(1.0, self._tick)
        # Recovery imports the move modules and opens the move journal (SQLite), which the
        # first screen need not wait for: after the first frame on the fleet screen; on one
        # host's screen after the frame with its first processes (on_host_changed), which
        # that work delayed when they came just after the first frame, or RECOVER_AFTER_S
        # at the latest (a host that sends none).
        if isinstance(self.screen_stack[-1], HostScreen):
            self.set_timer(RECOVER_AFTER_S, self._start_recovery)
        else:
            self.call_after_refresh(self._start_recovery)
        for err in self.config_errors:
            self.notify(err, severity="warning", timeout=10)
        if self._metrics_listen is not None:
            self._start_metrics(self._metrics_listen)

    def _start_metrics(self, listen: Listen) -> None:
        """Serve the fleet's figures for Prometheus (``--metrics``), read on this loop."""
        # prometheus_client only for a console that serves (start-up, docs/BENCHMARKS.md).
        from llmaos_tui.exporter import MetricsServer, public_warning  # noqa: PLC0415

        server = MetricsServer(self.fleet, listen, asyncio.get_running_loop())
        try:
            server.start()
        except OSError as exc:
            self.notify(
                f"metrics: cannot listen on {listen}: {exc.strerror or exc}",
                severity="error", timeout=15,
            )  # fmt: skip
            return
        self._metrics = server
        warning = public_warning(listen)
        if warning is not None:
            self.notify(f"metrics: {warning}", severity="warning", timeout=15)

    async def on_unmount(self) -> None:
        self._remember()
        # Textual cancels workers at exit without waiting; wait, so every link closes
        # its agent process instead of leaving it to the garbage collector.
        waits = asyncio.gather(*(w.wait() for w in self._link_workers), return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(waits, 5.0)
        if self._moves is not None:
            await self._moves.aclose()
        if self._metrics is not None:
            await self._metrics.aclose()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast, cleaned and drawn as plain text (``markup`` is ignored: a notice
        names what hosts report, so it is never markup)."""
        super().notify(
            clean(message), title=clean(title), severity=severity, timeout=timeout,
            markup=False,
        )  # fmt: skip

    def _link_of(self, host: str) -> Link | None:
        w = self.by_name.get(host)
        return w.link if w is not None else None

    async def ask_trust(self, question: HostKeyQuestion) -> bool:
        """Put an unknown host key to the operator; called from a link's worker."""
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.post_message(TrustRequest(question, answer))
        return await answer

    def on_trust_request(self, request: TrustRequest) -> None:
        # One dialog at a time, in the order asked: a question that came while the
        # operator reads another must not come up under the key they press for that one.
        self._trust_waiting.append(request)
        if len(self._trust_waiting) == 1:
            self._ask_next_trust()

    def _ask_next_trust(self) -> None:
        from llmaos_tui.screens.trust import TrustScreen  # noqa: PLC0415

        waiting = self._trust_waiting
        while waiting and waiting[0].answer.done():  # its link stopped asking (quitting)
            waiting.pop(0)
        if not waiting:
            return
        request = waiting[0]
        q = request.question

        def answered(trusted: bool) -> None:
            # Heard once: on a key, or as a refusal when the dialog went away unanswered.
            if not request.answer.done():
                request.answer.set_result(trusted)
            waiting.pop(0)
            self.call_later(self._ask_next_trust)  # once this dialog is off the stack

        self.push_screen(
            TrustScreen(
                q.name, q.target, q.key_type, q.fingerprint, q.known_hosts, on_answer=answered
            )
        )

    def _tick(self) -> None:
        self.fleet.tick()
        self._remember()
        if self.is_running and self.screen_stack and isinstance(self.screen, FleetScreen):
            self.screen.refresh_hosts(())

    # ------------------------------------------------------------- updates

    def _host_changed(self, host: HostState) -> None:
        # Called from the watchers (workers, on the app's loop), which never touch widgets.
        # A message per sample was 11% of the console's time at 1,000 hosts (bench/
        # fleet_scale.py): a sample only marks its host and arms the one coalescing timer.
        # The first processes of the host on screen go as a message: its handler draws.
        self._hosts_changed.set()
        screen = self.screen_stack[-1] if self.screen_stack else None
        first = host.procs and host.name not in self._first_drawn
        if first and isinstance(screen, HostScreen) and screen.host is host:
            self.post_message(HostChanged(host.name))
            return
        self._dirty.add(host.name)
        self._schedule_flush()

    def on_host_changed(self, message: HostChanged) -> None:
        self._dirty.add(message.name)
        first = self._first_procs(message.name)
        if message.name in self._first_drawn and not self._recovery_started:
            self.call_after_refresh(self._start_recovery)  # once its rows are on screen
        if first:
            # The first screen a user can read waits on nothing: drawn now, whatever the
            # timer below would have gathered with it.
            self._draw_dirty()
            return
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            fleet_view = self.screen_stack and isinstance(self.screen, FleetScreen)
            self.set_timer(FLEET_COALESCE_S if fleet_view else COALESCE_S, self._flush_dirty)

    def _first_procs(self, name: str) -> bool:
        """Whether ``name``'s first processes just came, its host screen is on top and
        has none drawn yet (one composed after they came drew them as it mounted)."""
        if name in self._first_drawn or not self.screen_stack:
            return False
        screen, host = self.screen, self.fleet.hosts.get(name)
        if host is None or not host.procs:
            return False
        if not isinstance(screen, HostScreen) or screen.host is not host:
            return False
        self._first_drawn.add(name)
        return screen.is_mounted and screen.query_one(ProcessTable).row_count == 0

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        self._draw_dirty()

    def _draw_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        # A timer that fires while the app shuts down: its screens lose their widgets
        # before the timers stop (Textual clears ``is_running`` first).
        if not self.is_running or not self.screen_stack:
            return
        screen = self.screen
        if not screen.is_mounted:  # pushed but not composed yet: its on_mount draws it whole
            return
        if isinstance(screen, FleetScreen):
            screen.refresh_hosts(dirty)
        elif isinstance(screen, HostScreen):
            if screen.host.name in dirty:
                screen.refresh_host()
        elif self._detail is not None and self._detail.screen is screen:
            if self._detail.host in dirty:
                self._detail_sample(self._detail)
        else:
            from llmaos_tui.screens.containers import ContainersScreen  # noqa: PLC0415
            from llmaos_tui.screens.requests import RequestsScreen  # noqa: PLC0415

            if isinstance(screen, RequestsScreen):
                screen.refresh_requests()
            elif isinstance(screen, ContainersScreen):
                screen.refresh_containers()

    # ------------------------------------------------------------- actions

    def open_host(self, name: str) -> None:
        host = self.fleet.hosts.get(name)
        if host is None:
            self.notify(f"no host {name!r}", severity="error")
            return
        if isinstance(self.screen, HostScreen):
            if self.screen.host.name == name:
                return
            self.pop_screen()
        screen = HostScreen(host, read_only=self.read_only, cursor_blink=self.cursor_blink)
        if self.settings.host_panels:
            screen.shown_panels = frozenset(self.settings.host_panels)
        self.push_screen(screen)
        self._unrestored.add(screen)
        self.call_after_refresh(self._restore_host, screen)

    def on_fleet_screen_open_host(self, message: FleetScreen.OpenHost) -> None:
        self.open_host(message.name)

    def action_fleet(self) -> None:
        while len(self.screen_stack) > 2 or not isinstance(self.screen, FleetScreen):
            self.pop_screen()

    def action_requests(self) -> None:
        self.open_requests(None)

    def on_open_requests(self, message: OpenRequests) -> None:
        self.open_requests(message.host)

    def open_requests(self, host: str | None) -> None:
        from llmaos_tui.screens.requests import RequestsScreen  # noqa: PLC0415

        if isinstance(self.screen, RequestsScreen):
            self.pop_screen()
        self.push_screen(RequestsScreen(self.fleet, host, read_only=self.read_only))

    def on_open_log(self, message: OpenLog) -> None:
        from llmaos_tui.screens.requests import LogScreen  # noqa: PLC0415

        self.push_screen(LogScreen(message.host, message.rid, self._fetch_log))

    async def _fetch_log(self, host: str, query: LogQuery) -> LogChunk:
        w = self.by_name.get(host)
        if w is None:
            raise LinkDown(f"no host {host!r}")
        chunk: LogChunk = await w.call("requests.log", query)
        return chunk

    def action_retry_hosts(self) -> None:
        """Try every host that is down again now: a held one (refused login or key) and
        one waiting out its backoff alike."""
        n = sum(1 for w in self.watchers if w.retry_now())
        self.notify(f"retrying {n} host(s)" if n else "no host is waiting to be retried")

    def action_audit(self) -> None:
        from llmaos_tui.screens.audit import AuditScreen  # noqa: PLC0415

        self.push_screen(AuditScreen(self.audit.read(), str(self.audit.path)))

    def on_change_intent(self, intent: ChangeIntent) -> None:
        if self.slurm_change(intent):  # a Slurm cluster's job (host "slurm:NAME")
            return
        self.run_worker(
            self._apply(intent), name=f"change:{intent.host}", group="changes", exit_on_error=False
        )

    async def _apply(self, intent: ChangeIntent) -> None:
        """Carry out one change on its host; the outcome is a notification either way."""
        w = self.by_name.get(intent.host)
        if w is None:
            self.notify(f"no host {intent.host!r}", severity="error")
            return
        call = w.call
        if intent.method.startswith("containers."):
            call = partial(w.call, timeout=CONTAINER_CALL_TIMEOUT)
        try:
            result = await change(
                call, intent.method, intent.params, host=intent.host, target=intent.target,
                audit=self.audit, read_only=self.read_only, before=intent.before,
            )  # fmt: skip
        except (ReadOnlyConsole, CallError, LinkDown) as exc:
            self.notify(f"{intent.host}: {exc}", severity="error", timeout=8)
            return
        except OSError as exc:  # the console's audit log could not be written
            self.notify(f"audit log: {exc}", severity="error", timeout=8)
            return
        if isinstance(result, Change):
            self.notify(f"{intent.host}: {result.target}: {result.before} → {result.after}")
        elif isinstance(result, RequestInfo):
            verb = intent.method.removeprefix("requests.")
            self.notify(f"{intent.host}: {verb} {result.id}: {describe(result)}")

    # ------------------------------------------------- processes on the wire

    def _screen_changed(self, _screen: Screen[object]) -> None:
        self.sync_procs()

    def _procs_needed(self) -> set[str] | None:
        """The hosts whose process tables something on screen or under way reads (None:
        every host): the host screen or process detail on top (a dialog over it keeps it),
        and every host while a plan is open or carried out (a plan reads the tables it
        was made from, and measures after its moves)."""
        if self.plans_busy or any(isinstance(s, PlanScreen) for s in self.screen_stack):
            return None
        detail = sys.modules.get("llmaos_tui.screens.proc_detail")
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ModalScreen):
                continue
            if isinstance(screen, HostScreen):
                return {screen.host.name}
            if detail is not None and isinstance(screen, detail.ProcDetailScreen):
                return {screen.detail.host}
            break
        return set()

    def sync_procs(self) -> None:
        """Stream per-process data only for the hosts that need it (``procs.watch``); the
        others cost their figures alone (issue 16: a host in the fleet view)."""
        if not self.screen_stack:  # shutting down
            return
        needed = self._procs_needed()
        for w in self.watchers:
            on = needed is None or w.state.name in needed
            if not on:
                self._first_drawn.discard(w.state.name)  # its table comes again whole
            w.want_procs(on)

    def on_open_proc_detail(self, message: OpenProcDetail) -> None:
        self.run_worker(
            self._open_detail(message), group="proc-detail", exclusive=True, exit_on_error=False
        )

    async def _ask_detail(self, host: str, pid: int, create_time: float) -> ProcAnswer:
        w = self.by_name.get(host)
        if w is None:
            raise LinkDown(f"no host {host!r}")
        answer: ProcAnswer = await w.call(
            "proc.detail", ProcDetailQuery(pid=pid, create_time=create_time)
        )
        return answer

    async def _open_detail(self, message: OpenProcDetail) -> None:
        try:
            answer = await self._ask_detail(message.host, message.pid, message.create_time)
        except (CallError, LinkDown) as exc:
            self.notify(f"{message.host}: {exc}", severity="error", timeout=8)
            return
        view = DetailView(
            message.host, message.pid, message.create_time,
            self._detail_of(message.host, message.create_time, answer),
            asked=time.monotonic(),
        )  # fmt: skip
        self.post_message(ProcDetailReady(view))

    def on_proc_detail_ready(self, message: ProcDetailReady) -> None:
        from llmaos_tui.screens.proc_detail import ProcDetailScreen  # noqa: PLC0415

        view = message.view
        top = self.screen_stack[-1] if self.screen_stack else None
        if not (isinstance(top, HostScreen) and top.host.name == view.host):
            return  # the operator left that host's screen while the agent answered
        self._take_point(view)
        view.screen = ProcDetailScreen(view.with_history(), read_only=self.read_only)
        self._detail = view
        self.push_screen(view.screen)

    def _take_point(self, view: DetailView) -> bool:
        """The process's CPU and RSS from its host's table, once per process pass."""
        h = self.fleet.hosts.get(view.host)
        if h is None or h.procs_version == view.procs_version:
            return False
        view.procs_version = h.procs_version
        p = h.procs.get(view.pid)
        if p is None or p.create_time != view.create_time:
            return False
        view.cpu.append(p.cpu / 100.0)
        view.mem.append(float(p.rss))
        return True

    def _detail_sample(self, view: DetailView) -> None:
        """A new sample of the open detail's host: its graphs take the new point; its
        fields are asked again, not oftener than every DETAIL_EVERY_S."""
        assert view.screen is not None
        took = self._take_point(view)
        gone = bool(view.detail.gone)
        if not gone and not view.asking and time.monotonic() - view.asked >= DETAIL_EVERY_S:
            view.asking, view.asked = True, time.monotonic()
            self.run_worker(self._refresh_detail(view), group="proc-detail-refresh",
                            exit_on_error=False)  # fmt: skip
        elif took:
            view.screen.update_detail(view.with_history())

    async def _refresh_detail(self, view: DetailView) -> None:
        from llmaos_tui.screens.proc_detail import RefreshProcDetail  # noqa: PLC0415

        assert view.screen is not None
        try:
            answer = await self._ask_detail(view.host, view.pid, view.create_time)
        except CallError as exc:
            if exc.code == NOT_FOUND:  # it exited (or its pid is another's): said on screen
                view.detail = dataclasses.replace(view.detail, gone=str(exc))
            else:
                return
        except LinkDown:  # the host is down: the host's own status says so
            return
        else:
            view.detail = self._detail_of(view.host, view.create_time, answer)
        finally:
            view.asking = False
        view.screen.post_message(RefreshProcDetail(view.with_history()))

    def _detail_of(self, host: str, create_time: float, a: ProcAnswer) -> ProcDetail:
        from llmaos_tui.screens.proc_detail_model import GpuUse, ProcDetail  # noqa: PLC0415

        h = self.fleet.hosts.get(host)
        names = {g.index: g.name for g in h.sample.gpus} if h and h.sample else {}
        reasons = {("cmdline" if u.field == "argv" else u.field): u.reason for u in a.unread}
        if a.argv_cut:
            reasons.setdefault("cmdline", "cut: longer than the agent sends")
        return ProcDetail(
            host=host, pid=a.pid, create_time=create_time, name=a.name,
            cmdline=list(a.argv) if a.argv else None, cwd=a.cwd, user=a.user,
            threads=a.threads, open_files=a.open_files, nice=a.nice, affinity=a.affinity,
            cgroup=a.cgroup, container=a.container, start_time=a.create_time, state=a.state,
            rss=a.rss, cores=h.cores if h else 0, reasons=reasons,
            gpus=[
                GpuUse(g.index, g.used_mem, g.sm, g.mem, names.get(g.index, ""))
                for g in a.gpus
            ],
        )  # fmt: skip

    # ---------------------------------------------------------- containers

    def action_containers(self) -> None:
        from llmaos_tui.screens.containers import ContainersScreen  # noqa: PLC0415

        host = self.screen.host.name if isinstance(self.screen, HostScreen) else None
        if isinstance(self.screen, ContainersScreen):
            self.pop_screen()
        self.push_screen(ContainersScreen(self.fleet, host, read_only=self.read_only))

    def on_open_container_log(self, message: OpenContainerLog) -> None:
        from llmaos_tui.screens.containers import ContainerLogScreen  # noqa: PLC0415

        self.push_screen(ContainerLogScreen(message.host, message.container, self._fetch_clog))

    async def _fetch_clog(self, host: str, query: ContainerLogQuery) -> ContainerLog:
        w = self.by_name.get(host)
        if w is None:
            raise LinkDown(f"no host {host!r}")
        log: ContainerLog = await w.call("containers.logs", query, timeout=30.0)
        return log

    def on_open_move(self, message: OpenMove) -> None:
        if self.read_only:
            self.notify("read-only: this console makes no changes (--read-only)", severity="error")
            return
        from llmaos_tui.screens.move import MoveScreen  # noqa: PLC0415

        self.push_screen(MoveScreen(self.fleet, message.host, message.container))

    def on_move_targets_query(self, q: MoveTargetsQuery) -> None:
        self.run_worker(self._targets(q), group="move-query", exit_on_error=False)

    async def _targets(self, q: MoveTargetsQuery) -> None:
        from llmaos_tui.screens.move import MoveTargetImage  # noqa: PLC0415

        async def one(target: str) -> None:
            has = await self.moves.has_image(target, q.image_id)  # None: shown as "?"
            q.screen.post_message(MoveTargetImage(target, has))

        await asyncio.gather(*(one(t) for t in q.targets))

    def on_move_plan_query(self, q: MovePlanQuery) -> None:
        self.run_worker(self._plan(q), group="move-query", exit_on_error=False)

    async def _plan(self, q: MovePlanQuery) -> None:
        from llmaos_tui.screens.move import MovePlanReady  # noqa: PLC0415

        try:
            plan, refusals = await self.moves.precheck(
                q.source, q.target, q.container.id, commit=q.commit,
                keep_source=q.keep_source, live=q.live,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - any failure is shown in the dialog, why
            q.screen.post_message(MovePlanReady(q.target, None, [], _why(exc)))
            return
        q.screen.post_message(MovePlanReady(q.target, plan, refusals))

    def on_move_intent(self, intent: MoveIntent) -> None:
        self.run_worker(self._move(intent), name="move", group="moves", exit_on_error=False)

    async def _move(self, intent: MoveIntent) -> None:
        """One move, off the loop; its steps go to the move screen, its end to a notice."""
        from llmaos_tui.ops.container_move import describe  # noqa: PLC0415
        from llmaos_tui.screens.move import MoveDone, MoveStepProgress  # noqa: PLC0415

        screen = intent.screen

        def progress(p: Progress) -> None:  # from the move's thread: post only
            screen.post_message(MoveStepProgress(p))

        res = await self.moves.move(
            intent.source, intent.target, intent.container.id, name=intent.container.name,
            commit=intent.commit, keep_source=intent.keep_source, live=intent.live,
            progress=progress,
        )  # fmt: skip
        summary = describe(res)
        screen.post_message(MoveDone(res, summary))
        self.notify(summary, severity="information" if res.ok else "error", timeout=10)

    def _start_recovery(self) -> None:
        if self._recovery_started or not self.is_running:
            return
        self._recovery_started = True
        self.run_worker(self._recover(), name="recover-moves", exit_on_error=False)

    async def _recover(self) -> None:
        """Finish the moves an earlier console left unfinished, once their hosts are up."""
        from llmaos_tui.ops.journal import OPEN_ERRORS  # noqa: PLC0415

        async def hosts_up(names: set[str]) -> None:
            self.notify("finishing unfinished container move(s)…", timeout=5)
            await self.hosts_up(names, RECOVER_WAIT_S)

        try:
            results = await self.moves.recover(hosts_up)
        except (ImportError, *OPEN_ERRORS) as exc:  # no docker SDK; the journal unreadable
            self.notify(f"recovering moves: {_why(exc)}", severity="error", timeout=10)
            return
        if not results:  # the usual start: the docker SDK (a third of a second) stays unloaded
            return
        from llmaos_tui.ops.container_move import describe  # noqa: PLC0415

        for r in results:
            self.notify(
                f"unfinished move: {describe(r)}",
                severity="information" if r.outcome in ("moved", "rolled_back") else "error",
                timeout=15,
            )

    async def hosts_up(self, names: set[str], timeout: float) -> bool:
        """Wait until every host in ``names`` is up, woken by the hosts' news (a host comes
        up only by its watcher's word), or ``timeout`` seconds; whether they are."""

        def up() -> bool:
            hosts = self.fleet.hosts
            return all(n in hosts and hosts[n].status is HostStatus.UP for n in names)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not up():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._hosts_changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._hosts_changed.wait(), left)
        return True

    def action_keys(self) -> None:
        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen(self.screen))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":  # F3: only where the screen has a filter
            return callable(getattr(self.screen, "action_filter", None))
        return super().check_action(action, parameters)

    def action_filter(self) -> None:
        """F3 (htop's search): the filter of the screen on top, where it has one."""
        run = getattr(self.screen, "action_filter", None)
        if callable(run):
            run()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Fleet", "Show every host (f)", self.action_fleet)
        yield SystemCommand("Keys", "Show the keys of this screen (?)", self.action_keys)
        yield SystemCommand("Requests", "Every host's request queue (r)", self.action_requests)
        plan_host = screen.host.name if isinstance(screen, HostScreen) else None
        yield SystemCommand(
            "Balance",
            f"Plan moves that lower β ({f'cores of {plan_host}' if plan_host else 'hosts'}; b)",
            partial(self.post_message, OpenPlan(plan_host, "cores" if plan_host else "hosts")),
        )
        yield SystemCommand(
            "Containers", "This host's or every host's containers (c)", self.action_containers
        )
        yield SystemCommand("Audit log", "The changes this console made (A)", self.action_audit)
        for name, h in self.fleet.hosts.items():
            yield SystemCommand(
                clean(f"Host: {name}"),
                clean(f"Open {name} ({h.target or 'host'})"),
                partial(self.open_host, name),
            )
        for t in sorted(self._themes):
            yield SystemCommand(
                f"Theme: {t}", f"Switch to the {t} theme", partial(self._set_theme, t)
            )
        if isinstance(screen, HostScreen):
            for c in COLUMNS:
                yield SystemCommand(
                    f"Sort processes by {c.label}",
                    "Sort the process table (again: invert)",
                    partial(screen.sort_processes, c.key),
                )
            yield SystemCommand(
                "Filter processes", "Filter the process table (/)", screen.action_filter
            )
        if isinstance(screen, FleetScreen):
            yield SystemCommand(
                "Heat map",
                "Every core and GPU of every host, or the table (h)",
                screen.action_toggle_heatmap,
            )
            yield SystemCommand("Filter hosts", "Filter the fleet (/)", screen.action_filter)
            for key, label in screen.SORT_CHOICES:
                yield SystemCommand(
                    f"Sort hosts by {label}",
                    "Sort the fleet (again: invert)",
                    partial(screen.sort_hosts, key),
                )

    def _set_theme(self, name: str) -> None:
        self.theme = name

    # ---------------------------------------------------------- screenshots

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """The palette's screenshot: into the state directory's ``screenshots`` (made,
        private to the user; Textual's default is the working or Downloads folder,
        which may not exist), and a notice that says where."""
        folder = Path(path) if path else self.screenshot_dir
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            saved = self.save_screenshot(filename, str(folder), time_format)
        except OSError as exc:
            self.notify(f"screenshot not saved: {exc}", severity="error", timeout=10)
            return None
        self.notify(f"screenshot saved: {saved}", timeout=10)
        return saved

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        self.deliver_screenshot(filename, path)

    # ------------------------------------------------------------ settings

    @staticmethod
    def default_settings_path() -> Path:
        """Where the console run from the command line keeps its settings."""
        return saved_settings.default_path()

    def _restore_host(self, screen: HostScreen) -> None:
        """The remembered sort on a new host screen (its panels were set before it drew)."""
        if not screen.is_mounted:
            if screen in self.screen_stack:
                self.call_after_refresh(self._restore_host, screen)
            else:
                self._unrestored.discard(screen)
            return
        self._unrestored.discard(screen)
        key, reverse = self.settings.host_sort, self.settings.host_reverse
        if key is None:
            return
        try:
            screen.query_one(ProcessTable).sort_by(key, reverse=reverse)
        except ValueError as exc:  # a column this version does not have
            self.notify(f"saved process sort: {exc}", severity="warning")

    def _restore_fleet(self, screen: FleetScreen) -> None:
        """The remembered sort and filter on the fleet screen; the filter bar shows the
        filter, so a fleet that looks short says why."""
        if not screen.is_mounted:
            if screen in self.screen_stack:
                self.call_after_refresh(self._restore_fleet, screen)
            else:
                self._unrestored.discard(screen)
            return
        self._unrestored.discard(screen)
        s = self.settings
        table = screen.query_one(HostTable)
        if s.fleet_sort is not None:
            try:
                screen.query_one(HostTable).sort_by(s.fleet_sort, reverse=s.fleet_reverse)
            except ValueError as exc:
                self.notify(f"saved fleet sort: {exc}", severity="warning")
        if s.fleet_filter:
            bar = screen.query_one(FilterBar)
            bar.value = s.fleet_filter  # posts Filtered: the screen filters the table
            bar.add_class("-active")
            table.focus()

    def _remember(self) -> None:
        """Keep what the operator chose (once a second, and at exit); written only when
        it changed. A read-only console reads them and writes none: it is the one a wall
        display or a second operator runs, and must leave the main console's choices as
        they are (its promise is that it changes nothing)."""
        if self.settings_path is None:
            return
        s = self.settings
        now: dict[str, object] = {"theme": self.theme}
        for screen in self.screen_stack:
            if not screen.is_mounted or screen in self._unrestored:
                continue
            if isinstance(screen, HostScreen):
                procs = screen.query_one(ProcessTable)
                now |= {
                    "host_sort": procs.sort_key,
                    "host_reverse": procs.reverse,
                    "host_panels": tuple(
                        p for p in saved_settings.PANELS if p in screen.shown_panels
                    ),
                }
            elif isinstance(screen, FleetScreen):
                hosts = screen.query_one(HostTable)
                now |= {
                    "fleet_sort": hosts.sort_key,
                    "fleet_reverse": hosts.reverse,
                    "fleet_filter": hosts.needle,
                }
        self.settings = dataclasses.replace(s, **now)  # type: ignore[arg-type]
        if self.settings == self._saved or self.read_only:
            return
        try:
            saved_settings.save(self.settings_path, self.settings)
        except OSError as exc:
            self.notify(f"settings not saved: {exc}", severity="warning", timeout=8)
            self.settings_path = None  # said once; the session goes on without saving
            return
        self._saved = self.settings


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "explanation", None) or exc) or type(exc).__name__
