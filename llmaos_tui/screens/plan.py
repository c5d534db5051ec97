"""Review a balancing plan: beta before, predicted after, floor; each move; apply.

Space deselects or reselects the move under the cursor and the prediction follows
(a unit moves at most once in a plan, so any subset is consistent). Enter asks the
app to carry the selected moves out; their results come back per move (a container
move's steps as they run), and after a settle time the measured beta is shown against
the prediction. At the hosts level ``u`` plans again moving requests and containers,
requests only, or containers only.

Unit names, hosts, notes and results (a move's error text) are the hosts' text: the
moves table is a :class:`SafeTable` and the summary and result lines are drawn with
``safe``.

A move's result (a failure's reason above all) can be longer than the terminal is wide, and
RESULT is the last column: the line under the table shows the cursor's move whole (what
moves where, why it was planned, its result with the reason), wrapped to the width, so
nothing is cut at 80 columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

# Re-exported (mypy --strict needs the alias): OpenPlan lives with the other intents, so
# the screens that post it need not load this one.
from llmaos_tui.screens.intents import OpenPlan as OpenPlan  # noqa: PLC0414
from llmaos_tui.widgets.key_footer import KeyFooter
from llmaos_tui.widgets.safe_table import SafeTable
from llmaos_tui.widgets.text import safe

if TYPE_CHECKING:
    # Annotations only: the planner is loaded when a plan is worked out, not with the
    # host and fleet screens at start-up.
    from llmaos_tui.balance import Plan

UNIT_CHOICES: tuple[frozenset[str], ...] = (
    frozenset({"requests", "containers"}),
    frozenset({"requests"}),
    frozenset({"containers"}),
)
"""What a hosts-level plan may move, in the order ``u`` cycles through them."""


DETAIL_CHARS = 600
"""At most this much of a move in the detail line (about 8 lines at 80 columns), the cut
marked with an ellipsis: the moves table keeps most of the screen."""


def _mark(ok: bool, tried: bool) -> str:
    """What a move's result starts with (a move left out says "not tried" itself)."""
    return "done: " if ok else "failed: " if tried else ""


def units_words(units: frozenset[str]) -> str:
    return " and ".join(sorted(units, reverse=True))  # "requests and containers"


class PlanReady(Message):
    """A plan worked out (off the loop), to open for review."""

    def __init__(
        self, plan: Plan, scope: str, hosts: list[str] | None, units: frozenset[str] | None
    ) -> None:
        super().__init__()
        self.plan = plan
        self.scope = scope
        self.hosts = hosts
        self.units = units


class ApplyPlan(Message):
    """Carry out the ``selected`` moves in order; ``stop_on_failure``: after a move fails,
    try none of the rest (they are marked "not tried")."""

    def __init__(
        self, screen: PlanScreen, selected: list[int], stop_on_failure: bool = False
    ) -> None:
        super().__init__()
        self.screen = screen
        self.selected = selected
        self.stop_on_failure = stop_on_failure


class MoveDone(Message):
    """How move ``index`` ended; ``tried`` False: left out after an earlier failure."""

    def __init__(self, index: int, ok: bool, message: str, tried: bool = True) -> None:
        super().__init__()
        self.index = index
        self.ok = ok
        self.message = message
        self.tried = tried


class MoveProgress(Message):
    """News of a running move (a container move's step), shown in its row."""

    def __init__(self, index: int, text: str) -> None:
        super().__init__()
        self.index = index
        self.text = text


class PlanMeasured(Message):
    def __init__(self, beta: float, settle: float) -> None:
        super().__init__()
        self.beta = beta
        self.settle = settle


class PlanScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="plan.back"),
        Binding("space", "toggle_move", "Select/deselect", id="plan.toggle"),
        Binding("enter", "apply", "Apply", id="plan.apply"),
        Binding("u", "units", "What moves", id="plan.units"),
        Binding("f", "toggle_stop", "Stop on failure", id="plan.stop_on_failure"),
    ]
    DEFAULT_CSS = """
    PlanScreen { layout: vertical; }
    PlanScreen #summary { height: auto; padding: 0 1; background: $panel; color: $text; }
    PlanScreen #result { height: auto; padding: 0 1; color: $text-muted; }
    PlanScreen #detail {
        height: auto; max-height: 9; padding: 0 1; background: $panel; color: $text;
    }
    PlanScreen DataTable { height: 1fr; }
    """
    COLUMNS = ("", "#", "WHAT", "FROM", "TO", "LOAD", "GAIN", "RESULT")

    def __init__(
        self,
        plan: Plan,
        scope: str,
        hosts: list[str] | None,
        *,
        read_only: bool = False,
        units: frozenset[str] | None = None,
    ):
        super().__init__(name="plan")
        self.plan = plan
        self.scope = scope
        self.hosts = hosts
        self.read_only = read_only
        self.units = units or UNIT_CHOICES[0]
        self.selected: set[int] = set(range(len(plan.moves)))
        self.results: dict[int, tuple[bool, str]] = {}
        self.applying = False
        self.measured: float | None = None
        self.stop_on_failure = False
        self.untried: set[int] = set()
        """Off by default: a failed move is shown and the others still run (``f`` turns it on)."""
        self.progress: dict[int, str] = {}
        """The latest news of each running move (its RESULT cell until it ends)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="summary")
        yield SafeTable(cursor_type="row", id="moves")
        yield Static("", id="detail")
        yield Static("", id="result")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for c in self.COLUMNS:
            table.add_column(c, key=c or "sel")
        for i, m in enumerate(self.plan.moves):
            what = m.name or m.unit
            table.add_row(
                "✓", str(i + 1), f"container {what}" if m.kind == "container" else what,
                m.src, m.dst,
                Text(f"{m.load:.2f}", justify="right"), Text(f"{m.gain:.3f}", justify="right"),
                "", key=str(i),
            )  # fmt: skip
        self._summary()
        self._detail()
        table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply" and (self.read_only or not self.plan.moves):
            return False
        if action == "units" and self.plan.level != "hosts":
            return False
        if action in ("apply", "toggle_move", "units", "toggle_stop") and (
            self.applying or self.results
        ):
            return None  # shown, greyed out, while the moves run (and after)
        return True

    @property
    def predicted(self) -> float:
        return self.plan.predict(sorted(self.selected))

    def _summary(self) -> None:
        p = self.plan
        text = (
            f"Balance {self.scope} · level {p.level} · β before {p.beta_before:.3f} → "
            f"predicted {self.predicted:.3f} · floor {p.floor:.3f} · "
            f"{len(self.selected)} of {len(p.moves)} moves"
        )
        if p.level == "hosts":
            text += f" · moving {units_words(self.units)} (u)"
        if p.moves:
            text += " · stop at the first failure (f)" if self.stop_on_failure else ""
        if p.note:
            text += f" · {p.note}"
        if self.read_only:
            text += " · read-only: review only"
        self.query_one("#summary", Static).update(safe(text))

    def _cursor(self) -> int | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return int(str(table.ordered_rows[table.cursor_row].key.value))

    def move_words(self, i: int) -> str:
        """Move ``i`` whole, in words: "#N WHAT: FROM → TO · planned: REASON · RESULT"."""
        m = self.plan.moves[i]
        what = m.name or m.unit
        what = f"container {what}" if m.kind == "container" else what
        text = f"#{i + 1} {what}: {m.src} → {m.dst}"
        if m.reason:
            text += f" · planned: {m.reason}"
        if i in self.results:
            ok, message = self.results[i]
            text += f" · {_mark(ok, i not in self.untried)}{message}"
        elif i in self.progress:
            text += f" · {self.progress[i]}"
        elif i not in self.selected:
            text += " · deselected"
        return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"

    def _detail(self) -> None:
        i = self._cursor()
        text = self.move_words(i) if i is not None else "no moves"
        self.query_one("#detail", Static).update(safe(text))

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._detail()

    def action_toggle_move(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count or self.applying:
            return
        i = int(str(table.ordered_rows[table.cursor_row].key.value))
        self.selected.symmetric_difference_update({i})
        table.update_cell(str(i), "sel", "✓" if i in self.selected else " ")
        self._summary()
        self._detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # The table takes Enter for itself; on this screen Enter means apply.
        event.stop()
        if self.check_action("apply", ()):
            self.action_apply()

    def action_apply(self) -> None:
        if self.applying or self.read_only or not self.selected:
            return
        self.applying = True
        self.refresh_bindings()
        self.query_one("#result", Static).update("applying…")
        self.post_message(ApplyPlan(self, sorted(self.selected), self.stop_on_failure))

    def action_toggle_stop(self) -> None:
        if self.applying or self.results:
            return
        self.stop_on_failure = not self.stop_on_failure
        self._summary()

    def action_units(self) -> None:
        if self.applying or self.results or self.plan.level != "hosts":
            return
        at = UNIT_CHOICES.index(self.units) if self.units in UNIT_CHOICES else -1
        nxt = UNIT_CHOICES[(at + 1) % len(UNIT_CHOICES)]
        host = self.hosts[0] if self.hosts and len(self.hosts) == 1 else None
        self.app.post_message(OpenPlan(host, "hosts", nxt))

    def on_move_progress(self, msg: MoveProgress) -> None:
        if msg.index not in self.results:
            self.progress[msg.index] = msg.text
            self.query_one(DataTable).update_cell(str(msg.index), "RESULT", msg.text)
            self._detail()

    def on_move_done(self, msg: MoveDone) -> None:
        self.results[msg.index] = (msg.ok, msg.message)
        if not msg.tried:
            self.untried.add(msg.index)
        mark = _mark(msg.ok, msg.tried)
        self.query_one(DataTable).update_cell(str(msg.index), "RESULT", mark + msg.message)
        self._detail()

    def on_plan_measured(self, msg: PlanMeasured) -> None:
        self.measured = msg.beta
        ok = sum(1 for good, _ in self.results.values() if good)
        tried = len(self.results) - len(self.untried)
        self.query_one("#result", Static).update(
            f"{ok} of {tried} moves made · after {msg.settle:.0f} s: "  # numbers only
            f"measured β {msg.beta:.3f} against predicted {self.predicted:.3f} "
            f"(before {self.plan.beta_before:.3f})"
        )

    def action_back(self) -> None:
        self.dismiss()
