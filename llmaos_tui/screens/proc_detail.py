"""One process in detail (Enter on a process, as htop's and btop's consoles do): its
full command line, where and as whom it runs, its limits and placement, its GPU use,
and its CPU and memory history as graphs; the host screen's actions from here too.

The app fills a :class:`~llmaos_tui.screens.proc_detail_model.ProcDetail` (the agent's
``proc.detail`` and the host's history) and calls :meth:`ProcDetailScreen.update_detail`
(or posts :class:`RefreshProcDetail` to the screen) on each new sample; the fields and
graphs change in place. The actions post the same :class:`ChangeIntent` the host screen
posts, so they take the app's one change path (audited, through the host's link).

Every text here is the host's (another user's command line, cwd, cgroup, container
name): each is drawn through :func:`llmaos_agent.safetext.clean` and as Text, never as
markup. The command line is wrapped, never cut: what runs is what the operator reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from msgspec import Struct
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from llmaos_agent.protocol import Renice, SendSignal, SetAffinity
from llmaos_agent.safetext import clean
from llmaos_tui.screens.intents import ChangeIntent
from llmaos_tui.screens.intents import OpenProcDetail as OpenProcDetail  # noqa: PLC0414 (re-exported)
from llmaos_tui.screens.proc_detail_model import ProcDetail, started, state_words
from llmaos_tui.screens.proc_prompts import ask_cores, ask_nice, ask_signal, stepped_nice
from llmaos_tui.widgets.graph import Graph, Series
from llmaos_tui.widgets.key_footer import KeyFooter
from llmaos_tui.widgets.text import NA, human_bytes

LABEL_W = 10
"""The labels' column: "Open files"."""
MEM_MIN_TOP = 1 << 20
"""The least top of the memory graph (1 MiB): a tiny process still draws a scale."""


class RefreshProcDetail(Message):
    """New figures for an open detail screen (posted to it by the app)."""

    def __init__(self, detail: ProcDetail) -> None:
        super().__init__()
        self.detail = detail


class ProcDetailScreen(Screen[None]):
    # The process actions keep the host screen's keys and ids: a remap in keys.toml
    # moves them on both screens, where the operator expects the same key.
    BINDINGS = [
        Binding("escape", "close", "Back", id="detail.close"),
        Binding("f7", "nice(-1)", "Nice -", id="host.nice_down"),
        Binding("f8", "nice(1)", "Nice +", id="host.nice_up"),
        Binding("n", "set_nice", "Nice…", id="host.nice"),
        Binding("a", "affinity", "Affinity", id="host.affinity"),
        Binding("f9,k", "signal", "Kill…", id="host.signal"),
    ]
    CHANGES = frozenset({"nice", "set_nice", "affinity", "signal"})
    COMPONENT_CLASSES = {"detail--label", "detail--reason", "detail--warn", "detail--title"}
    DEFAULT_CSS = """
    ProcDetailScreen { layout: vertical; }
    ProcDetailScreen > .detail--label { color: $text-muted; }
    ProcDetailScreen > .detail--reason { color: $text-muted; text-style: italic; }
    ProcDetailScreen > .detail--warn { color: $warning; }
    ProcDetailScreen > .detail--title { color: $accent; text-style: bold; }
    ProcDetailScreen #title { height: 1; padding: 0 1; background: $panel; }
    ProcDetailScreen #body { height: 1fr; padding: 0 1; }
    ProcDetailScreen #cmdline { height: auto; margin-bottom: 1; }
    ProcDetailScreen #facts { height: auto; }
    ProcDetailScreen #facts > Static { width: 1fr; height: auto; }
    ProcDetailScreen #where { height: auto; margin-bottom: 1; }
    ProcDetailScreen #graphs { height: 5; }
    ProcDetailScreen #graphs > Graph { width: 1fr; height: 5; }
    ProcDetailScreen #cpu-graph { margin-right: 2; }
    """

    def __init__(
        self,
        detail: ProcDetail,
        *,
        read_only: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name=f"proc:{detail.host}:{detail.pid}")
        self.detail = detail
        self.read_only = read_only
        self.clock = clock
        self._mounted = False
        self._drawn: ProcDetail | None = None
        self._command_shown: tuple[str | None, str] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        with VerticalScroll(id="body"):
            yield Static(id="cmdline")
            with Horizontal(id="facts"):
                yield Static(id="facts-left")
                yield Static(id="facts-right")
            yield Static(id="where")
            with Horizontal(id="graphs"):
                yield Graph(Series("CPU", top=None, min_top=1.0), id="cpu-graph")
                yield Graph(
                    Series("RSS", top=None, unit="bytes", colour="accent", min_top=MEM_MIN_TOP),
                    id="mem-graph",
                )
        yield KeyFooter()

    def on_mount(self) -> None:
        self._mounted = True
        self._draw()

    def on_unmount(self) -> None:
        self._mounted = False

    # ------------------------------------------------------------- figures in

    def update_detail(self, detail: ProcDetail) -> None:
        """New figures for this process: fields and graphs change in place. An answer for
        another process (a late one, after the pid was reused) is ignored."""
        if (detail.host, detail.pid, detail.create_time) != (
            self.detail.host,
            self.detail.pid,
            self.detail.create_time,
        ):
            return
        self.detail = detail
        self._draw()

    def on_refresh_proc_detail(self, message: RefreshProcDetail) -> None:
        self.update_detail(message.detail)

    def _style(self, name: str) -> Style:
        # Without the screen's background: the title bar has its own.
        s = self.get_component_rich_style(f"detail--{name}")
        return Style(color=s.color, bold=s.bold, italic=s.italic)

    def _value(self, name: str, shown: str | None, warn: bool = False) -> Text:
        """A field's value (cleaned), or why there is none."""
        if shown is None:
            why = self.detail.reason(name)
            return Text(clean(why) if why else NA, self._style("reason"))
        return Text(clean(shown), self._style("warn") if warn else "")

    def _table(self, rows: list[tuple[str, Text]]) -> Table:
        """Label and value rows; a long value wraps under itself, never under the label."""
        t = Table.grid(padding=(0, 1))
        t.add_column(width=LABEL_W, no_wrap=True)
        t.add_column(ratio=1, overflow="fold")
        for label, value in rows:
            value.overflow = "fold"  # a long word (a path, a token) folds, is never cut
            t.add_row(Text(label, self._style("label")), value)
        return t

    def _draw(self) -> None:
        if not self._mounted:
            return
        d = self.detail
        if d == self._drawn:
            return
        self._drawn = d
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(f"pid {d.pid} ", self._style("title"))
        title.append(clean(d.name), self._style("title"))
        title.append(f"  on {clean(d.host)}", self._style("label"))
        if d.gone:
            title.append(f"  exited: {clean(d.gone)}", self._style("warn"))
        self.query_one("#title", Static).update(title)
        # A command line may be 128 KiB: laid out again only when it changed, not on
        # every sample (that took 0.18 CPU s a refresh).
        shown = (d.command, d.reason("cmdline"))
        if shown != self._command_shown:
            self._command_shown = shown
            command = self._table([("Command", self._value("cmdline", d.command))])
            self.query_one("#cmdline", Static).update(command)

        state = None if d.state is None else state_words(d.state)
        warn = (d.state or "")[:1] in ("D", "T", "t", "Z")
        rss = None if d.rss is None else human_bytes(d.rss)
        left = [
            ("State", self._value("state", state, warn=warn)),
            ("User", self._value("user", d.user)),
            ("Threads", self._value("threads", _num(d.threads))),
            ("Open files", self._value("open_files", _num(d.open_files))),
        ]
        right = [
            ("Nice", self._value("nice", _num(d.nice))),
            ("Affinity", self._value("affinity", d.affinity)),
            ("RSS", self._value("rss", rss)),
        ]
        self.query_one("#facts-left", Static).update(self._table(left))
        self.query_one("#facts-right", Static).update(self._table(right))

        start = d.start_time if d.start_time is not None else d.create_time
        where = [
            ("Started", self._value("start_time", started(start, self.clock()))),
            ("cwd", self._value("cwd", d.cwd)),
            ("cgroup", self._value("cgroup", d.cgroup)),
            ("Container", self._value("container", d.container)),
            *self._gpus(),
        ]
        self.query_one("#where", Static).update(self._table(where))

        self.query_one("#cpu-graph", Graph).set_values(list(d.cpu_history))
        self.query_one("#mem-graph", Graph).set_values(list(d.mem_history))

    def _gpus(self) -> list[tuple[str, Text]]:
        d = self.detail
        if d.gpus is None:
            return [("GPUs", self._value("gpus", None))]
        if not d.gpus:
            return [("GPUs", Text("none"))]
        rows = []
        for g in d.gpus:
            line = Text()
            line.append(f"{human_bytes(g.mem)}", "")
            line.append("  SM ", self._style("label"))
            line.append(_pct(g.sm))
            line.append("  mem bw ", self._style("label"))
            line.append(_pct(g.mem_share))
            if g.name:
                line.append(f"  {clean(g.name)}", self._style("label"))
            rows.append((f"GPU{g.index}", line))
        return rows

    # ------------------------------------------------------------- actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Read-only: the keys that change something are hidden and do nothing.
        return not (action in self.CHANGES and self.read_only)

    def action_close(self) -> None:
        self.dismiss()

    def _target(self) -> str:
        return f"pid {self.detail.pid} ({self.detail.name})"

    def _can_change(self) -> bool:
        if self.detail.gone:
            self.notify(f"pid {self.detail.pid} has exited", severity="warning")
            return False
        return True

    def _change(self, method: str, params: Struct, before: str) -> None:
        self.post_message(ChangeIntent(self.detail.host, method, params, self._target(), before))

    def action_nice(self, step: int) -> None:
        d = self.detail
        new = stepped_nice(d.nice, step) if self._can_change() else None
        if new is not None:
            renice = Renice(pid=d.pid, create_time=d.create_time, nice=new)
            self._change("proc.renice", renice, f"nice {d.nice}")

    def action_set_nice(self) -> None:
        d = self.detail
        if not self._can_change():
            return

        def chosen(n: int) -> None:
            renice = Renice(pid=d.pid, create_time=d.create_time, nice=n)
            self._change("proc.renice", renice, f"nice {d.nice}")

        ask_nice(self.app, self._target(), d.nice, chosen)

    def action_affinity(self) -> None:
        d = self.detail
        if not self._can_change():
            return
        if d.cores <= 0:
            self.notify("this host's core count is not known yet", severity="warning")
            return

        def chosen(cores: list[int]) -> None:
            aff = SetAffinity(pid=d.pid, create_time=d.create_time, cores=cores)
            self._change("proc.affinity", aff, f"cores {d.affinity}")

        ask_cores(self.app, self._target(), d.cores, d.affinity, chosen)

    def action_signal(self) -> None:
        d = self.detail
        if not self._can_change():
            return

        def chosen(sig: str) -> None:
            send = SendSignal(pid=d.pid, create_time=d.create_time, signal=sig)
            self._change("proc.signal", send, d.state or "")

        ask_signal(self.app, self._target(), d.host, chosen)


def _num(n: int | None) -> str | None:
    return None if n is None else str(n)


def _pct(x: float | None) -> str:
    return NA if x is None else f"{x * 100:.0f}%"
