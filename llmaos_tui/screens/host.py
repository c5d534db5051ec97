"""One host: its cores, GPUs, memory, balance and processes (btop's view, htop's table)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input

from llmaos_tui.fleet.state import HostState
from llmaos_tui.widgets.beta_panel import BetaPanel
from llmaos_tui.widgets.core_bars import CoreBars
from llmaos_tui.widgets.gpu_panel import GpuPanel
from llmaos_tui.widgets.host_header import HostHeader
from llmaos_tui.widgets.memory_panel import MemoryPanel
from llmaos_tui.widgets.process_table import ProcessTable


class HostScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Fleet", id="host.back"),
        Binding("slash", "filter", "Filter", key_display="/", id="host.filter"),
    ]
    DEFAULT_CSS = """
    HostScreen { layout: vertical; }
    HostScreen #top { height: auto; max-height: 50%; }
    HostScreen #cores { width: 1fr; padding: 0 1; }
    HostScreen #side { width: 48; height: auto; padding: 0 1; border-left: vkey $panel; }
    HostScreen #gpus { padding: 0 1; border-top: hkey $panel; }
    HostScreen #proc-filter { display: none; height: 3; }
    HostScreen #proc-filter.-active { display: block; }
    """

    def __init__(self, host: HostState, *, read_only: bool = False, cursor_blink: bool = True):
        super().__init__(name=f"host:{host.name}")
        self.host = host
        self.read_only = read_only
        self.cursor_blink = cursor_blink
        self._procs_version = -1
        self._mounted = False

    def compose(self) -> ComposeResult:
        yield HostHeader(self.host, read_only=self.read_only)
        with Horizontal(id="top"):
            yield CoreBars(id="cores")
            with Vertical(id="side"):
                yield MemoryPanel(id="memory")
                yield BetaPanel(id="beta")
        yield GpuPanel(id="gpus")
        yield Input(
            placeholder="filter: pid, user, name or command (Enter keeps, Esc clears)",
            id="proc-filter",
        )
        yield ProcessTable(id="procs")
        yield Footer()

    def on_mount(self) -> None:
        self._mounted = True
        self.query_one(Input).cursor_blink = self.cursor_blink
        self.refresh_host()
        self.query_one(ProcessTable).focus()

    def on_screen_resume(self) -> None:
        self.refresh_host()

    def refresh_host(self) -> None:
        if not self._mounted:  # pushed but not composed yet: on_mount draws it
            return
        h = self.host
        self.query_one(HostHeader).update_host()
        s = h.sample
        cores = h.cores
        if s is not None:
            self.query_one(CoreBars).update_loads(s.cpu)
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
        self.query_one(GpuPanel).update_gpus(s.gpus if s else [], reason, h.procs)
        if h.procs_version != self._procs_version:
            self._procs_version = h.procs_version
            self.query_one(ProcessTable).update_procs(h.procs, h.mem_total, cores)

    # ------------------------------------------------------------- actions

    def action_back(self) -> None:
        flt = self.query_one(Input)
        if flt.has_class("-active"):
            self._close_filter(clear=True)
            return
        self.dismiss()

    def sort_processes(self, key: str) -> None:
        self.query_one(ProcessTable).sort_by(key)

    def action_filter(self) -> None:
        flt = self.query_one(Input)
        flt.add_class("-active")
        flt.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one(ProcessTable).set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._close_filter(clear=False)

    def _close_filter(self, *, clear: bool) -> None:
        flt = self.query_one(Input)
        if clear:
            flt.value = ""
            self.query_one(ProcessTable).set_filter("")
        if not flt.value:
            flt.remove_class("-active")
        self.query_one(ProcessTable).focus()
