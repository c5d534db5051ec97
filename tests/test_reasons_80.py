"""At 80x24 the audit log and the balance review show each row's result with its whole
reason: the cursor's row is written out, wrapped, under the table (RESULT is the last
column, past the edge of a narrow terminal)."""

from __future__ import annotations

import io
import re
from typing import Any

from rich.console import Console
from textual.app import App
from textual.screen import Screen
from textual.widgets import DataTable

from llmaos_tui.balance import Move, Plan
from llmaos_tui.balance.model import Slot
from llmaos_tui.screens.audit import AuditScreen
from llmaos_tui.screens.plan import MoveDone, PlanScreen
from tests.helpers import wait_for

SIZE = (80, 24)
WHY = [
    "refused: the agent on gpu-node-17 is read-only (daemon --read-only), nothing changed",
    "error: pid 48213 (python train.py --config configs/llama-70b.yaml) is gone: it "
    "exited between the look and the signal",
    "refused: the audit log /var/lib/llmaos/audit.jsonl cannot take a record: no space "
    "left on device",
]


def shown(app: App[None]) -> str:
    """The screen's text as one line, whitespace collapsed: a wrapped sentence reads whole."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    console.print(app.screen._compositor.render_update(full=True))
    return re.sub(r"\s+", " ", console.export_text(styles=False))


async def shows(app: App[None], words: str) -> str:
    """The screen's text once it has ``words`` (a redraw may come a moment later)."""
    await wait_for(lambda: words in shown(app), 5, words)
    return shown(app)


class OneScreen(App[None]):
    def __init__(self, screen: Screen[None]) -> None:
        super().__init__()
        self.first = screen

    def on_mount(self) -> None:
        self.push_screen(self.first)


def audit_entry(i: int, result: str) -> dict[str, Any]:
    return {
        "time": f"2026-03-0{i + 1}T10:00:00+00:00", "operator": "alice@console-laptop",
        "host": f"gpu-node-{17 + i}", "action": "proc.signal",
        "target": f"pid {48213 + i} (python train.py --config configs/llama-70b.yaml)",
        "before": "running", "after": "sent SIGTERM", "result": result,
    }  # fmt: skip


async def test_audit_shows_each_result_with_its_reason_at_80_columns() -> None:
    entries = [audit_entry(i, why) for i, why in enumerate(WHY)]
    app = OneScreen(AuditScreen(entries, "/home/alice/.local/state/llmaos/audit.jsonl"))
    async with app.run_test(size=SIZE) as pilot:
        table = app.first.query_one(DataTable)
        await wait_for(lambda: table.row_count == 3 and table.has_focus, what="the log")
        for n, why in enumerate(reversed(WHY)):  # newest first
            if n:
                await pilot.press("down")
            text = await shows(app, why)
            for other in WHY:
                if other != why:  # the other rows' reasons are not on screen whole
                    assert other not in text
            host = f"gpu-node-{17 + WHY.index(why)}"
            assert f"proc.signal on {host}" in text


def plan() -> Plan:
    slots = (Slot("gpu-node-17", "hosts", 16.0, 13.0), Slot("gpu-node-18", "hosts", 16.0, 3.0))
    moves = tuple(
        Move(f"gpu-node-17/r-{i}", "gpu-node-17", "gpu-node-18", 2.0, 0.1, 0.2,
             f"queued behind a 64-core job on gpu-node-17; gpu-node-18 has {i + 4} free cores",
             kind="request_queued", name=f"nightly-evaluation-sweep-{i}")
        for i in range(3)
    )  # fmt: skip
    return Plan("hosts", 0.5, 0.2, 0.0, moves, slots)


async def test_balance_review_shows_each_result_with_its_reason_at_80_columns() -> None:
    screen = PlanScreen(plan(), "the fleet", None)
    app = OneScreen(screen)
    async with app.run_test(size=SIZE) as pilot:
        table = screen.query_one(DataTable)
        await wait_for(lambda: table.row_count == 3 and table.has_focus, what="the review")
        reason = plan().moves[0].reason
        text = await shows(app, reason)
        assert "#1 nightly-evaluation-sweep-0: gpu-node-17 → gpu-node-18" in text
        outcomes = [
            MoveDone(0, True, "r-0 queued on gpu-node-18 as r-91, the original cancelled"),
            MoveDone(1, False, WHY[0]),
            MoveDone(2, False, "not tried: an earlier move failed", tried=False),
        ]
        for m in outcomes:
            screen.post_message(m)
        await wait_for(lambda: len(screen.results) == 3, 5, "the moves' results")
        results = [
            "done: r-0 queued on gpu-node-18 as r-91, the original cancelled",
            f"failed: {WHY[0]}",
            "not tried: an earlier move failed",
        ]
        for n, words in enumerate(results):
            if n:
                await pilot.press("down")
            text = await shows(app, words)
            assert plan().moves[n].reason in text  # with why it was planned
            for other in results:
                if other != words:
                    assert other not in text
