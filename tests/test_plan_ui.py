"""Pilot test of the balancing review: b on a host, deselect a move, apply, measured beta.

Made against the loads of the window the plan saw, whatever else runs on the machine: a
hog's move off core 0 that clearly gains must be in the plan; when the window offers
nothing to gain (other jobs fill the other cores) the review says so, and the review's
selection, apply and measurement are checked on the move a user would make by hand.
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from textual.widgets import DataTable

from llmaos_tui.app import LlmaosApp
from llmaos_tui.balance import Move, Plan
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.plan import PlanScreen
from tests.helpers import (
    CLEAR_GAIN,
    best_hog_move,
    beta_and_counterfactual,
    hogs_busy,
    review,
    wait_for,
)
from tests.test_daemon import end, start_daemon
from tests.test_requests import FAST

CORES = psutil.cpu_count() or 1
CPU0 = "local/cpu0"


def _pid(unit: str) -> int:
    return int(unit.split("/pid")[1].split("@", maxsplit=1)[0])


def _by_hand(plan: Plan, unit: str, load: float) -> Plan:
    """The review of one move a user would make by hand: ``unit`` off core 0 to the least
    loaded other core, in the window of ``plan``."""
    least = min((s for s in plan.slots if s.id != CPU0), key=lambda s: s.load)
    m = Move(unit=unit, src=CPU0, dst=least.id, load=load, gain=0.0,
             beta_after=plan.beta_before, reason="by hand", name="hog")  # fmt: skip
    p = Plan("cores", plan.beta_before, 0.0, plan.floor, (m,), plan.slots)
    return Plan("cores", plan.beta_before, p.predict([0]), plan.floor, (m,), plan.slots)


@pytest.mark.skipif(CORES < 2, reason="needs two cores to balance")
async def test_review_deselect_updates_prediction_then_apply(
    agent_home: Path, hogs: list[psutil.Process], tmp_path: Path
) -> None:
    proc = start_daemon(*FAST)
    pids = {p.pid for p in hogs}
    try:
        app = LlmaosApp([LocalLink()], cursor_blink=False, audit=AuditLog(tmp_path / "a.jsonl"))
        app.settle_s = 1.5
        async with app.run_test(size=(130, 40)) as pilot:
            host = app.fleet.hosts["local"]
            await hogs_busy(host, pids)
            assert isinstance(app.screen, HostScreen)
            loads = {pid: min(1.0, host.procs[pid].cpu / 100.0) for pid in pids}
            await pilot.press("b")
            screen = await review(app)
            assert isinstance(screen, PlanScreen)
            plan = screen.plan
            dst, gain = best_hog_move(plan.slots, CPU0, list(loads.values()))
            why = (
                f"window {[(s.id, round(s.load, 2)) for s in plan.slots]}, hogs {loads}: "
                f"best hog move to {dst} gains {gain:.3f}; plan {plan.moves}"
            )
            assert all(m.gain > 0 for m in plan.moves), why
            assert plan.beta_after_predicted <= plan.beta_before, why
            hog_moves = [i for i, m in enumerate(plan.moves) if m.unit.startswith("local/pid")
                         and _pid(m.unit) in pids]  # fmt: skip
            if gain >= 2 * CLEAR_GAIN:  # core 0 clearly hotter than a core with room
                assert hog_moves and plan.beta_after_predicted < plan.beta_before, why
            if not hog_moves:
                # Nothing to gain for the hogs in this window: the review says what it
                # found and leaves them where they are; then the move by hand.
                assert not plan.moves or plan.beta_after_predicted < plan.beta_before
                assert not plan.moves or screen.check_action("apply", ()) is not False
                await pilot.press("escape")
                await wait_for(lambda: isinstance(app.screen, HostScreen), 15, "the host again")
                assert all(tuple(p.cpu_affinity()) == (0,) for p in hogs)
                pid = max(loads, key=lambda p: loads[p])
                unit = f"local/pid{pid}@{host.procs[pid].create_time}"
                plan = _by_hand(plan, unit, loads[pid])
                screen = PlanScreen(plan, "local", ["local"])
                await app.push_screen(screen)
                hog_moves = [0]
            table = screen.query_one(DataTable)
            for i in range(len(plan.moves)):  # never re-pin another job's process
                if i not in hog_moves:
                    table.move_cursor(row=i)
                    await pilot.press("space")
            assert screen.selected == set(hog_moves)
            chosen = screen.predicted
            assert chosen == pytest.approx(plan.predict(hog_moves))
            first = hog_moves[0]
            table.move_cursor(row=first)
            await pilot.press("space")  # deselect a move: the prediction follows
            assert first not in screen.selected
            assert screen.predicted == pytest.approx(plan.predict(sorted(screen.selected)))
            if plan.moves[first].gain > 0:
                assert screen.predicted > chosen
            await pilot.press("space")  # and back
            assert screen.predicted == pytest.approx(chosen)
            await pilot.press("enter")
            await wait_for(lambda: screen.measured is not None, 60, "the measurement")
            assert all(ok for ok, _ in screen.results.values()), screen.results
            core = {_pid(plan.moves[i].unit): int(plan.moves[i].dst.rsplit("cpu", 1)[1])
                    for i in hog_moves}  # fmt: skip
            want = sorted((core.get(p.pid, 0),) for p in hogs)
            assert sorted(tuple(p.cpu_affinity()) for p in hogs) == want  # one stayed
            moved = {pid: (0, c) for pid, c in core.items()}
            await wait_for(
                lambda: all((q := host.procs.get(pid)) is not None and q.core == c
                            and q.cpu > 10 for pid, (_o, c) in moved.items()),
                30, "the moved hogs busy on their new cores",
            )  # fmt: skip
            now, without, seen = beta_and_counterfactual(host, moved)
            assert now < without - 0.1, (now, without, seen, host.sample, why)
            assert screen.measured is not None and screen.measured < without - 0.1, why
    finally:
        end(proc)
