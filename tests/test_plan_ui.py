"""Pilot test of the balancing review: b on a host, deselect a move, apply, measured beta."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from llmaos_tui.app import LlmaosApp
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.screens.host import HostScreen
from llmaos_tui.screens.plan import PlanScreen
from tests.helpers import hogs_and_idle_core, review, wait_for
from tests.test_daemon import end, start_daemon
from tests.test_requests import FAST

CORES = psutil.cpu_count() or 1


@pytest.mark.skipif(CORES < 2, reason="needs two cores to balance")
async def test_review_deselect_updates_prediction_then_apply(
    agent_home: Path, hogs: list[psutil.Process], tmp_path: Path
) -> None:
    proc = start_daemon(*FAST)
    try:
        app = LlmaosApp([LocalLink()], cursor_blink=False, audit=AuditLog(tmp_path / "a.jsonl"))
        app.settle_s = 1.5
        async with app.run_test(size=(130, 40)) as pilot:
            host = app.fleet.hosts["local"]
            skip = await hogs_and_idle_core(host, {p.pid for p in hogs})
            if not skip:
                assert isinstance(app.screen, HostScreen)
                await pilot.press("b")
                screen = await review(app)
                assert isinstance(screen, PlanScreen)
                plan = screen.plan
                others = [sl.load for sl in plan.slots if not sl.id.endswith("/cpu0")]
                if not plan.moves and others and min(others) > 0.4:
                    # another job took the idle core between the check above and the plan
                    pytest.skip(f"the other cores turned busy ({others}): nothing to gain")
                assert plan.moves and plan.beta_after_predicted < plan.beta_before
                full = screen.predicted
                await pilot.press("space")  # deselect the first move: no gain from it
                assert 0 not in screen.selected
                assert screen.predicted == pytest.approx(plan.predict(sorted(screen.selected)))
                assert screen.predicted > full
                await pilot.press("space")  # and back
                assert screen.predicted == pytest.approx(full)
                await pilot.press("enter")
                await wait_for(lambda: screen.measured is not None, 30, "the measurement")
                assert all(ok for ok, _ in screen.results.values()), screen.results
                assert sorted(tuple(p.cpu_affinity()) for p in hogs) == [(0,), (1,)]
                assert screen.measured is not None and screen.measured < plan.beta_before
        if skip:
            pytest.skip(skip)
    finally:
        end(proc)
