"""One host: its cores, GPUs, memory, balance and processes (btop's view, htop's table).

The screen shares its height out as btop does (:func:`plan_layout`): the process table
keeps about 40% of it; every core is drawn in the richest form that fits what is left
(:func:`llmaos_tui.widgets.core_bars.fit`), the GPUs one line each unless there is room
for their detail. Keys 1, 2, 3 and 4 hide and show the cores, the GPUs, the processes
and the history and I/O panel (:mod:`llmaos_tui.widgets.io_panel`), which takes its lines
from what the cores' densest form leaves: its full height where that leaves room, one
summary line where it does not, none where not even that is left (a big host at 80x24).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from msgspec import Struct
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen

from llmaos_agent.protocol import Proc, Renice, SendSignal, SetAffinity
from llmaos_tui.fleet.gpu_owners import host_gpu_owners
from llmaos_tui.fleet.state import HostState
from llmaos_tui.screens.intents import ChangeIntent, OpenPlan, OpenProcDetail, OpenRequests
from llmaos_tui.screens.proc_prompts import ask_cores, ask_nice, ask_signal, stepped_nice
from llmaos_tui.widgets import gpu_panel, io_panel
from llmaos_tui.widgets.beta_panel import BetaPanel
from llmaos_tui.widgets.core_bars import CoreBars, Form, fit
from llmaos_tui.widgets.filter_bar import FilterBar
from llmaos_tui.widgets.gpu_panel import GpuPanel
from llmaos_tui.widgets.host_header import HostHeader
from llmaos_tui.widgets.io_panel import IoPanel
from llmaos_tui.widgets.key_footer import KeyFooter
from llmaos_tui.widgets.memory_panel import MemoryPanel
from llmaos_tui.widgets.process_table import ProcessTable

PROCS_SHARE = 0.4
"""The share of the screen's height the process table keeps."""
WIDE_W, WIDE_H = 120, 30
"""From this size on, memory and β sit in a column beside the cores."""
SIDE_W = 48
"""That column's width, with its border and padding."""
PANELS = ("cores", "gpus", "procs", "io")
IO_SPARE = 2
"""Lines the I/O panel leaves the cores' richer forms before it takes its full height."""


@dataclass(frozen=True)
class HostLayout:
    """Heights (in lines) of the host screen's panels for one size, and the forms."""

    wide: bool
    cores_rows: int
    cores_form: Form
    side_rows: int
    gpu_rows: int
    gpu_detail: bool
    procs_min: int
    gpu_tiny: bool = False
    io_rows: int = 0


def plan_layout(
    width: int,
    height: int,
    cores: int,
    gpus: int,
    shown: frozenset[str] = frozenset(PANELS),
    chrome: int = 2,
) -> HostLayout:
    """Share ``height`` out: ``chrome`` lines (header, footer, an open filter), then the
    process table's :data:`PROCS_SHARE`, then every core, the GPUs compact, and what is
    left to richer core forms and the GPUs' detail. The cores come before the table: a
    host too big for the rest takes lines from it rather than lose a core."""
    wide = width >= WIDE_W and height >= WIDE_H and "cores" in shown
    procs_min = max(4, math.ceil(PROCS_SHARE * height)) if "procs" in shown else 0
    budget = max(0, height - chrome - procs_min)
    side_rows = 5 if wide else 2
    gpu_border = 1 if wide else 0
    gpu_w = width - 2
    if "gpus" in shown:
        gpu_min = gpu_panel.rows(gpus, gpu_w, detail=False) + gpu_border
        gpu_max = gpu_panel.rows(gpus, gpu_w, detail=True) + gpu_border
        gpu_tiny = gpu_panel.rows(gpus, gpu_w, detail=False, tiny=True) + gpu_border
    else:
        gpu_min = gpu_max = gpu_tiny = 0
    core_w = width - SIDE_W - 2 if wide else width - 2
    core_budget = budget - gpu_min - (0 if wide else side_rows)
    io_rows = 0
    if "io" in shown:
        # Sized as if the cores and GPUs were shown: hiding one gives its lines to the
        # process table, as before, rather than make this panel jump.
        all_wide = width >= WIDE_W and height >= WIDE_H
        all_side = 5 if all_wide else 2
        densest = fit(cores, width - SIDE_W - 2 if all_wide else width - 2, 1)[1]
        top_least = max(densest, all_side) if all_wide else densest + all_side
        all_gpu = gpu_panel.rows(gpus, gpu_w, detail=False) + (1 if all_wide else 0)
        spare = max(0, height - chrome - procs_min) - all_gpu - top_least
        io_rows = io_panel.FULL_ROWS if spare >= io_panel.FULL_ROWS + IO_SPARE else min(1, spare)
        io_rows = max(0, io_rows)
        core_budget -= io_rows
        budget -= io_rows
    if "cores" in shown:
        form, rows = fit(cores, core_w, max(1, core_budget))
    else:
        form, rows = "full", 0
    top = max(rows, side_rows) if wide else rows + side_rows
    detail = gpus > 0 and top + gpu_max <= budget
    # Compact GPUs that would push the table under its share take the tiny form instead.
    tiny = not detail and top + gpu_min > budget and gpu_tiny < gpu_min
    gpu_rows = (gpu_max if detail else gpu_tiny if tiny else gpu_min) - gpu_border
    if "gpus" not in shown:
        gpu_rows = 0
    return HostLayout(wide, rows, form, side_rows, gpu_rows, detail, procs_min, tiny, io_rows)


class HostScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Fleet", id="host.back"),
        Binding("slash", "filter", "Filter", key_display="/", id="host.filter"),
        Binding("f7", "nice(-1)", "Nice -", id="host.nice_down"),
        Binding("f8", "nice(1)", "Nice +", id="host.nice_up"),
        Binding("n", "set_nice", "Nice…", id="host.nice"),
        Binding("a", "affinity", "Affinity", id="host.affinity"),
        Binding("f9,k", "signal", "Kill…", id="host.signal"),
        Binding("r", "requests", "Requests", id="host.requests"),
        Binding("b", "balance", "Balance", id="host.balance"),
        Binding("1", "panel('cores')", "Cores", show=False, id="host.panel_cores"),
        Binding("2", "panel('gpus')", "GPUs", show=False, id="host.panel_gpus"),
        Binding("3", "panel('procs')", "Processes", show=False, id="host.panel_procs"),
        Binding("4", "panel('io')", "I/O", show=False, id="host.panel_io"),
    ]
    CHANGES = frozenset({"nice", "set_nice", "affinity", "signal"})
    DEFAULT_CSS = """
    HostScreen { layout: vertical; }
    HostScreen #top { height: auto; }
    HostScreen #cores { width: 1fr; padding: 0 1; }
    HostScreen #side { width: 48; height: auto; padding: 0 1; border-left: vkey $panel; }
    HostScreen #gpus { padding: 0 1; border-top: hkey $panel; }
    HostScreen.-narrow #top { layout: vertical; }
    HostScreen.-narrow #side { width: 1fr; border-left: none; }
    HostScreen.-narrow #gpus { border-top: none; }
    HostScreen.-no-cores #cores { display: none; }
    HostScreen.-no-gpus #gpus { display: none; }
    HostScreen.-no-procs #procs { display: none; }
    HostScreen.-no-io #io { display: none; }
    """

    def __init__(self, host: HostState, *, read_only: bool = False, cursor_blink: bool = True):
        super().__init__(name=f"host:{host.name}")
        self.host = host
        self.read_only = read_only
        self.cursor_blink = cursor_blink
        self._procs_version = -1
        self._mounted = False
        self.shown_panels: frozenset[str] = frozenset(PANELS)
        self.layout_plan: HostLayout | None = None
        self._layout_key: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield HostHeader(self.host, read_only=self.read_only)
        with Horizontal(id="top"):
            yield CoreBars(id="cores")
            with Vertical(id="side"):
                yield MemoryPanel(id="memory")
                yield BetaPanel(id="beta")
        yield GpuPanel(id="gpus")
        yield IoPanel(id="io")
        yield FilterBar("pid, user, name or command", id="proc-filter")
        yield ProcessTable(id="procs")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._mounted = True
        self.query_one(FilterBar).cursor_blink = self.cursor_blink
        self.refresh_host()
        # Focused now, not after the app's next message (``focus()``): the footer's first
        # keys are then the table's too, so it is built once, not first with the screen's
        # five keys and again with the table's before the first frame with processes.
        self.set_focus(self.query_one(ProcessTable))

    def on_resize(self, _event: events.Resize) -> None:
        self._relayout()

    def _relayout(self) -> None:
        if not self._mounted:
            return
        s = self.host.sample
        cores = len(s.cpu) if s is not None else self.host.cores
        gpus = len(s.gpus) if s is not None else 0
        bar = self.query_one(FilterBar)
        chrome = 2 + (3 if bar.active else 0)
        size = self.size
        key = (size, cores, gpus, self.shown_panels, chrome)
        if key == self._layout_key:
            return
        self._layout_key = key
        plan = plan_layout(size.width, size.height, cores, gpus, self.shown_panels, chrome)
        self.layout_plan = plan
        self.set_class(not plan.wide, "-narrow")
        for name in PANELS:
            self.set_class(name not in self.shown_panels, f"-no-{name}")
        bars = self.query_one(CoreBars)
        bars.max_rows = max(1, plan.cores_rows)
        bars.styles.height = max(1, plan.cores_rows)
        for w in (self.query_one(MemoryPanel), self.query_one(BetaPanel)):
            w.set_class(not plan.wide, "-compact")
        panel = self.query_one(GpuPanel)
        panel.set_detail(plan.gpu_detail, plan.gpu_tiny)
        panel.styles.height = max(1, plan.gpu_rows) + (1 if plan.wide else 0)
        io = self.query_one(IoPanel)
        io.set_rows(plan.io_rows)
        # No lines for it: hidden as by its key, though the key's choice stays.
        io.display = "io" in self.shown_panels and plan.io_rows > 0

    def action_panel(self, name: str) -> None:
        """Hide or show one panel, as btop's number keys do; one always stays."""
        shown = self.shown_panels ^ {name}
        # The I/O panel is an extra beside the three views: it never stays alone.
        if not shown - {"io"}:
            self.notify("one panel stays shown", severity="warning")
            return
        self.shown_panels = frozenset(shown)
        self._relayout()
        if name == "procs" and name in shown:
            self.query_one(ProcessTable).focus()

    def on_unmount(self) -> None:
        self._mounted = False  # being torn down: its widgets may already be gone

    def on_screen_resume(self) -> None:
        self.refresh_host()

    def refresh_host(self) -> None:
        if not self._mounted:  # pushed but not composed yet: on_mount draws it
            return
        h = self.host
        self._relayout()
        self.query_one(HostHeader).update_host()
        s = h.sample
        cores = h.cores
        if s is not None:
            self.query_one(CoreBars).update_loads(s.cpu, h.io)
        elif cores:
            self.query_one(CoreBars).update_loads([0.0] * cores)
        self.query_one(MemoryPanel).update_memory(
            s.mem if s else None, s.load if s else None, len(h.procs)
        )
        hist = list(h.history)[-120:]
        self.query_one(BetaPanel).update_betas(
            h.beta_cpu,
            cores,
            [p.beta_cpu for p in hist],
            h.beta_gpu,
            len(s.gpus) if s else 0,
            [p.beta_gpu for p in hist],
        )
        reason = h.hello.caps.nvml_reason if h.hello else None
        gpus = s.gpus if s else []
        owners = host_gpu_owners(h) if any(g.procs for g in gpus) else None
        self.query_one(GpuPanel).update_gpus(gpus, reason, h.procs, h.io, owners)
        io = self.query_one(IoPanel)
        if io.display:
            io.update_host(h)
        table = self.query_one(ProcessTable)
        table.update_gpus(s.gpus if s else [])  # the GPU% column's shares, every sample
        if h.procs_version != self._procs_version:
            self._procs_version = h.procs_version
            table.update_procs(h.procs, h.mem_total, cores)

    # ------------------------------------------------------------- actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Read-only: the keys that change something are hidden and do nothing.
        return not (action in self.CHANGES and self.read_only)

    def _selected(self) -> Proc | None:
        p = self.query_one(ProcessTable).selected
        if p is None:
            self.notify("no process selected", severity="warning")
        return p

    def _change(self, method: str, params: Struct, p: Proc, before: str) -> None:
        self.post_message(
            ChangeIntent(self.host.name, method, params, f"pid {p.pid} ({p.name})", before)
        )

    def action_nice(self, step: int) -> None:
        p = self._selected()
        new = None if p is None else stepped_nice(p.nice, step)
        if p is not None and new is not None:
            renice = Renice(pid=p.pid, create_time=p.create_time, nice=new)
            self._change("proc.renice", renice, p, f"nice {p.nice}")

    def action_set_nice(self) -> None:
        p = self._selected()
        if p is None:
            return

        def chosen(n: int) -> None:
            renice = Renice(pid=p.pid, create_time=p.create_time, nice=n)
            self._change("proc.renice", renice, p, f"nice {p.nice}")

        ask_nice(self.app, f"pid {p.pid} ({p.name})", p.nice, chosen)

    def action_affinity(self) -> None:
        p = self._selected()
        if p is None:
            return

        def chosen(cores: list[int]) -> None:
            aff = SetAffinity(pid=p.pid, create_time=p.create_time, cores=cores)
            self._change("proc.affinity", aff, p, f"cores {p.affinity}")

        ask_cores(self.app, f"pid {p.pid} ({p.name})", self.host.cores, p.affinity, chosen)

    def action_signal(self) -> None:
        p = self._selected()
        if p is None:
            return

        def chosen(sig: str) -> None:
            send = SendSignal(pid=p.pid, create_time=p.create_time, signal=sig)
            self._change("proc.signal", send, p, p.status)

        ask_signal(self.app, f"pid {p.pid} ({p.name})", self.host.name, chosen)

    def on_process_table_detail_asked(self, event: ProcessTable.DetailAsked) -> None:
        event.stop()
        p = event.proc
        self.app.post_message(OpenProcDetail(self.host.name, p.pid, p.create_time))

    def action_requests(self) -> None:
        self.app.post_message(OpenRequests(self.host.name))

    def action_balance(self) -> None:
        self.app.post_message(OpenPlan(self.host.name, "cores"))

    def action_back(self) -> None:
        bar = self.query_one(FilterBar)
        if bar.active:
            bar.clear_filter()
            self._relayout()
            return
        self.dismiss()

    def sort_processes(self, key: str) -> None:
        self.query_one(ProcessTable).sort_by(key)

    def action_filter(self) -> None:
        self.query_one(FilterBar).open()
        self._relayout()

    def on_filter_bar_filtered(self, event: FilterBar.Filtered) -> None:
        self.query_one(ProcessTable).set_filter(event.value)

    def on_filter_bar_done(self, _event: FilterBar.Done) -> None:
        self._relayout()
        self.query_one(ProcessTable).focus()
