"""Pilot tests of the balancing review's container side, without hosts.

``u`` on a hosts-level review plans again with requests only, containers only, then
both; a container move that cannot reach its engines comes back in its row as a
failure (through the app's real engines, journal and audit), and a move's step news
shows in its row while it runs.
"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from llmaos_tui.app import LlmaosApp
from llmaos_tui.balance import Move, Plan
from llmaos_tui.balance.model import Slot
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.journal import MoveJournal
from llmaos_tui.screens.fleet import FleetScreen
from llmaos_tui.screens.plan import MoveProgress, PlanScreen
from tests.helpers import review, wait_for

SIZE = (140, 30)


def app_for(tmp_path: Path) -> LlmaosApp:
    return LlmaosApp(
        [], cursor_blink=False, audit=AuditLog(tmp_path / "audit.jsonl"),
        journal=MoveJournal(tmp_path / "moves.sqlite"),
    )  # fmt: skip


def summary(screen: PlanScreen) -> str:
    return str(screen.query_one("#summary", Static).render())


async def test_u_cycles_what_a_hosts_plan_may_move(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("b")
        screen = await review(app)
        seen = []
        for _ in range(4):
            assert isinstance(screen, PlanScreen) and screen.plan.level == "hosts"
            seen.append(sorted(screen.units))
            assert "(u)" in summary(screen)
            await pilot.press("u")
            screen = await review(app, after=screen)
        assert seen == [
            ["containers", "requests"], ["requests"], ["containers"], ["containers", "requests"]
        ]  # fmt: skip
        assert len(app.screen_stack) == 3  # each new plan replaced the last: fleet, plan
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_container_move_in_review_reports_its_failure_and_progress(tmp_path: Path) -> None:
    move = Move(unit="a/ct:web@0123456789ab", src="a", dst="b", load=1.0, gain=0.25,
                beta_after=0.0, reason="", kind="container", name="web")  # fmt: skip
    slots = (Slot("a", "fleet", 2.0, 1.0), Slot("b", "fleet", 2.0, 0.0))
    plan = Plan("hosts", 0.5, 0.0, 0.0, (move,), slots)
    app = app_for(tmp_path)
    app.settle_s = 0.1
    async with app.run_test(size=SIZE) as pilot:
        screen = PlanScreen(plan, "the fleet", None)
        await app.push_screen(screen)
        table = screen.query_one(DataTable)
        assert str(table.get_row_at(0)[2]) == "container web"
        screen.post_message(MoveProgress(0, "image 12/40 MB…"))
        await pilot.pause(0.1)
        assert str(table.get_row_at(0)[7]) == "image 12/40 MB…"
        await pilot.press("enter")
        await wait_for(lambda: screen.measured is not None, 15, "the plan to end")
        ok, message = screen.results[0]
        assert not ok and "web stays on a" in message and "no host 'a'" in message
        assert str(table.get_row_at(0)[7]).startswith("failed: web stays on a")
        await pilot.press("u")  # after a plan ran, its review stays as it is
        await pilot.pause(0.5)
        assert app.screen is screen


async def test_stop_on_failure_leaves_the_rest_untried(tmp_path: Path) -> None:
    def move(name: str) -> Move:
        return Move(unit=f"a/ct:{name}@0123456789ab", src="a", dst="b", load=1.0, gain=0.1,
                    beta_after=0.0, reason="", kind="container", name=name)  # fmt: skip

    slots = (Slot("a", "fleet", 2.0, 2.0), Slot("b", "fleet", 2.0, 0.0))
    plan = Plan("hosts", 0.5, 0.0, 0.0, (move("web"), move("db")), slots)
    for stop in (False, True):
        app = app_for(tmp_path / str(stop))
        app.settle_s = 0.1
        async with app.run_test(size=SIZE) as pilot:
            screen = PlanScreen(plan, "the fleet", None)
            await app.push_screen(screen)
            if stop:
                await pilot.press("f")
                assert "stop at the first failure (f)" in summary(screen)
            await pilot.press("enter")

            def ended(s: PlanScreen = screen) -> bool:  # this pass's screen, bound now
                return s.measured is not None

            await wait_for(ended, 15, "the plan to end")
            table = screen.query_one(DataTable)
            assert str(table.get_row_at(0)[7]).startswith("failed: web stays on a")
            second = str(table.get_row_at(1)[7])
            result = str(screen.query_one("#result", Static).render())
            if stop:  # the first failed: the second was never tried
                assert second == "not tried: an earlier move failed"
                assert result.startswith("0 of 1 moves made")
            else:  # failures do not stop the others
                assert second.startswith("failed: db stays on a")
                assert result.startswith("0 of 2 moves made")
