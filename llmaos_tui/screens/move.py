"""The move dialog: pick a target host for a container, see the pre-check, move it.

The picker lists the other hosts that run an agent, each with its free cores, free memory,
GPUs, and whether its engine already has the container's image (then nothing is streamed).
Highlighting a target asks the app for the move's plan (:class:`MovePlanQuery`): the
pre-check's refusals, or the steps it will take. Enter asks the app to move it
(:class:`MoveIntent`); each step then gets a progress bar, with the bytes streamed for the
image and the volumes. The app does all the work (through :class:`~llmaos_tui.ops.moves.Moves`)
and answers with the messages below, carrying the move's own values (the
:class:`~llmaos_tui.ops.move_model.MovePlan`, each step's
:class:`~llmaos_tui.ops.move_model.Progress`, the
:class:`~llmaos_tui.ops.move_model.MoveResult`); this screen only shows them.

Container names, images, engine errors and refusals are the hosts' text: the targets
table is a :class:`SafeTable` and every other piece is drawn with ``safe``.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Checkbox, DataTable, Label, ProgressBar, Static

from llmaos_agent.protocol import Container
from llmaos_tui.fleet.state import FleetState, HostState
from llmaos_tui.ops.move_model import MovePlan, MoveResult, Progress
from llmaos_tui.screens.containers import size
from llmaos_tui.widgets.key_footer import KeyFooter
from llmaos_tui.widgets.safe_table import SafeTable
from llmaos_tui.widgets.text import safe, safe_lines

# ------------------------------------------------------------------ screen -> app


class _MoveAsk(Message):
    """A move of the screen's container from its source to ``target``, with its options."""

    def __init__(
        self, screen: MoveScreen, target: str, commit: bool, keep_source: bool, live: bool
    ) -> None:
        super().__init__()
        self.screen = screen
        self.source = screen.source
        self.container = screen.container
        self.target = target
        self.commit = commit
        self.keep_source = keep_source
        self.live = live


class MovePlanQuery(_MoveAsk):
    """Work out the move (changes nothing); ``live``: also say whether checkpoint and
    restore could be used, and why not."""


class MoveTargetsQuery(Message):
    """Which of ``targets`` already have image ``image_id``."""

    def __init__(self, screen: MoveScreen, targets: list[str]) -> None:
        super().__init__()
        self.screen = screen
        self.image_id = screen.container.image_id
        self.targets = targets


class MoveIntent(_MoveAsk):
    """Move it (the app journals, audits and reports each step back to ``screen``)."""


# ------------------------------------------------------------------ app -> screen


class MovePlanReady(Message):
    """``plan``: the pre-checked move, or None with ``error``; ``refusals``: why it cannot
    go ahead, in words."""

    def __init__(
        self, target: str, plan: MovePlan | None, refusals: list[str], error: str = ""
    ) -> None:
        super().__init__()
        self.target = target
        self.plan = plan
        self.refusals = refusals
        self.error = error


class MoveTargetImage(Message):
    def __init__(self, target: str, has: bool | None) -> None:
        super().__init__()
        self.target = target
        self.has = has


class MoveStepProgress(Message):
    """A step's news, as the move reported it."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress


class MoveDone(Message):
    """The move ended: ``result`` says how (its ``outcome``: moved, rolled_back, refused or
    failed); ``summary`` says it in words."""

    def __init__(self, result: MoveResult, summary: str) -> None:
        super().__init__()
        self.result = result
        self.summary = summary


def free_gpus(h: HostState) -> str:
    s = h.sample
    if s is None or not s.gpus:
        return "0"
    idle = sum(1 for g in s.gpus if not g.procs and (g.util or 0.0) < 0.05)
    return f"{idle}/{len(s.gpus)}"


class MoveScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Close", id="move.close"),
        Binding("enter", "go", "Move", id="move.go"),
        Binding("c", "toggle_commit", "Commit", id="move.commit"),
        Binding("k", "toggle_keep", "Keep source", id="move.keep"),
        Binding("v", "toggle_live", "Live", id="move.live"),
    ]
    DEFAULT_CSS = """
    MoveScreen { layout: vertical; }
    MoveScreen #title { height: 1; padding: 0 1; background: $panel; color: $text; }
    MoveScreen #targets { height: auto; max-height: 12; }
    MoveScreen #options { height: auto; }
    MoveScreen #options Checkbox { width: auto; }
    MoveScreen #plan { height: auto; padding: 0 1; }
    MoveScreen #plan.refused { color: $error; }
    MoveScreen #steps { height: 1fr; padding: 0 1; }
    MoveScreen .step { height: 1; }
    MoveScreen .step Label { width: 24; }
    MoveScreen .step ProgressBar { width: 1fr; }
    MoveScreen .step.failed Label { color: $error; }
    MoveScreen #outcome { height: auto; padding: 0 1; text-style: bold; }
    MoveScreen #outcome.failed { color: $error; }
    MoveScreen #outcome.moved { color: $success; }
    """
    COLUMNS = ("HOST", "FREE CORES", "FREE MEM", "FREE GPUS", "IMAGE", "ENGINE")

    def __init__(self, fleet: FleetState, source: str, container: Container) -> None:
        super().__init__(name="move")
        self.fleet = fleet
        self.source = source
        self.container = container
        self.targets = [
            h.name for h in fleet.hosts.values() if h.name != source and h.up and h.docker
        ]
        self.has_image: dict[str, bool | None] = {}
        self.plan: MovePlan | None = None
        self.plan_for: str | None = None
        self.refusals: list[str] = []
        self.running = False
        self.finished: str | None = None  # the outcome, once it ended
        self._bars: dict[str, ProgressBar] = {}

    def compose(self) -> ComposeResult:
        c = self.container
        title = f"Move {c.name} ({c.image}, {c.state}) from {self.source} to…"
        yield Static(safe(title), id="title")
        yield SafeTable(cursor_type="row", id="targets")
        with Horizontal(id="options"):
            yield Checkbox("commit its file changes (c)", id="commit")
            yield Checkbox("keep the source, stopped (k)", id="keep")
            yield Checkbox("live: checkpoint and restore (v)", id="live")
        yield Static("", id="plan")
        yield VerticalScroll(id="steps")
        yield Static("", id="outcome")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col in self.COLUMNS:
            table.add_column(col, key=col)
        for name in self.targets:
            table.add_row(*self._cells(name), key=name)
        if not self.targets:
            self.query_one("#plan", Static).update(
                "No other host with a Docker engine is up: nowhere to move to."
            )
        else:
            self.post_message(MoveTargetsQuery(self, list(self.targets)))
            self._ask_plan()
        table.focus()

    def _cells(self, name: str) -> tuple[str, ...]:
        h = self.fleet.hosts[name]
        free = max(0.0, h.cores - h.busy_cores)
        avail = h.mem_available
        has = self.has_image.get(name)
        return (
            name,
            f"{free:.1f}/{h.cores}",
            size(avail) if avail is not None else "?",
            free_gpus(h),
            "?" if has is None else "yes" if has else "no (streamed)",
            h.hello.caps.docker_reason or "ok" if h.hello else "?",
        )

    def selected_target(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.ordered_rows[table.cursor_row].key.value)

    def _options(self) -> tuple[bool, bool, bool]:
        return (
            self.query_one("#commit", Checkbox).value,
            self.query_one("#keep", Checkbox).value,
            self.query_one("#live", Checkbox).value,
        )

    def _ask_plan(self) -> None:
        target = self.selected_target()
        if target is None or self.running or self.finished:
            return
        self.plan, self.plan_for = None, None
        self.query_one("#plan", Static).update(safe(f"Pre-checking the move to {target}…"))
        commit, keep, live = self._options()
        self.post_message(MovePlanQuery(self, target, commit, keep, live))

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._ask_plan()

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        # The table has the focus and takes Enter for itself: Enter on a target moves.
        self.action_go()

    def on_checkbox_changed(self, _event: Checkbox.Changed) -> None:
        self._ask_plan()

    def action_toggle_commit(self) -> None:
        box = self.query_one("#commit", Checkbox)
        box.value = not box.value

    def action_toggle_keep(self) -> None:
        box = self.query_one("#keep", Checkbox)
        box.value = not box.value

    def action_toggle_live(self) -> None:
        box = self.query_one("#live", Checkbox)
        box.value = not box.value

    # ------------------------------------------------------------ answers

    def on_move_target_image(self, msg: MoveTargetImage) -> None:
        self.has_image[msg.target] = msg.has
        if msg.target in self.targets:
            table = self.query_one(DataTable)
            # Wider than the "?" the column was sized for: "no (streamed)" was cut short.
            table.update_cell(msg.target, "IMAGE", self._cells(msg.target)[4], update_width=True)

    def on_move_plan_ready(self, msg: MovePlanReady) -> None:
        if msg.target != self.selected_target() or self.running:
            return  # an answer for a row the operator has moved on from
        box = self.query_one("#plan", Static)
        self.plan, self.plan_for, self.refusals = msg.plan, msg.target, msg.refusals
        if msg.plan is None:
            box.update(safe(f"Cannot pre-check the move to {msg.target}: {msg.error}"))
            box.add_class("refused")
            return
        if not msg.plan.commit:  # a committed image is new everywhere
            self.on_move_target_image(MoveTargetImage(msg.target, not msg.plan.stream_image))
        if msg.refusals:
            box.add_class("refused")
            lines = [f"Refused: the move to {msg.target} cannot go ahead:"]
            lines += [f"  • {r}" for r in msg.refusals]
            box.update(safe_lines(lines))
            return
        box.remove_class("refused")
        steps = " → ".join(msg.plan.label(s) for s in msg.plan.steps)
        box.update(safe_lines([f"Pre-check passed. Enter moves it to {msg.target}:", f"  {steps}"]))

    def action_go(self) -> None:
        target = self.selected_target()
        if self.running or self.finished or target is None:
            return
        if self.plan is None or self.plan_for != target:
            self.notify("Wait for the pre-check of this target.", severity="warning")
            return
        if self.refusals:
            self.notify("The pre-check refused this move; see why above.", severity="error")
            return
        self.running = True
        steps = self.query_one("#steps", VerticalScroll)
        for step in self.plan.steps:
            # Empty until the step starts: an indeterminate bar animates (redraws) for the
            # whole move, and those redraws took the CPU the move's streams needed.
            bar = ProgressBar(total=1, show_eta=False, id=f"bar-{step}")
            self._bars[step] = bar
            steps.mount(Horizontal(Label(safe(self.plan.label(step))), bar, classes="step"))
        commit, keep, live = self._options()
        moving = f"Moving {self.container.name} to {target}…"
        self.query_one("#outcome", Static).update(safe(moving))
        self.post_message(MoveIntent(self, target, commit, keep, live))

    def on_move_step_progress(self, msg: MoveStepProgress) -> None:
        p = msg.progress
        bar = self._bars.get(p.step)
        if bar is None:
            return
        row = bar.parent
        label = row.query_one(Label) if row is not None else None
        if p.state == "start":
            bar.update(total=None)  # running: indeterminate until its bytes say more
        elif p.state == "bytes":
            # Without a known total the bar stays indeterminate: bytes are not a fraction.
            bar.update(total=p.total or None, progress=p.bytes)
        elif p.state in ("done", "skip"):
            bar.update(total=1, progress=1)
        elif p.state == "failed":  # what was written stays as it was; never shown full
            if row is not None:
                row.add_class("failed")
            if label is not None:
                written = f" after {size(p.bytes)}B" if p.bytes else ""
                label.update(safe(f"{p.step} failed{written}"))
            return
        if label is not None and p.bytes and p.state in ("bytes", "done"):
            label.update(safe(f"{p.step} {size(p.bytes)}B"))

    def on_move_done(self, msg: MoveDone) -> None:
        outcome = msg.result.outcome
        self.running = False
        self.finished = outcome
        if outcome == "moved":  # steps that report no news of their own are done too
            for bar in self._bars.values():
                bar.update(total=1, progress=1)
        out = self.query_one("#outcome", Static)
        out.set_class(outcome == "moved", "moved")
        out.set_class(outcome != "moved", "failed")
        out.update(safe(msg.summary + "  (Esc closes)"))

    def action_back(self) -> None:
        if self.running:
            self.notify("The move is running; it ends moved or rolled back.", severity="warning")
            return
        self.dismiss()
