"""The app's side of balancing: compute a plan, open its review, carry it out, measure.

A mixin of :class:`llmaos_tui.app.LlmaosApp`. Moves run one after another in an
async worker on the app's loop (each through its host's link, audited); results
and the measurement are posted to the review screen, never drawn from the worker.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from textual.app import App

from llmaos_tui.balance import Level
from llmaos_tui.fleet.link import LinkDown
from llmaos_tui.ops.rebalance import Caller, apply_move, measure, plan_fleet
from llmaos_tui.screens.plan import ApplyPlan, MoveDone, OpenPlan, PlanMeasured, PlanScreen

if TYPE_CHECKING:
    from llmaos_tui.fleet.state import FleetState
    from llmaos_tui.fleet.watcher import HostWatcher
    from llmaos_tui.ops.audit import AuditLog

SETTLE_S = 5.0
"""Seconds between the last move and the measurement: a few samples of the new state."""


class PlanActions(App[None]):
    fleet: FleetState
    by_name: dict[str, HostWatcher]
    audit: AuditLog
    read_only: bool
    settle_s: float = SETTLE_S

    def on_open_plan(self, msg: OpenPlan) -> None:
        level: Level = (
            "cores" if msg.level == "cores" else "gpus" if msg.level == "gpus" else "hosts"
        )
        hosts = [msg.host] if msg.host else None
        p = plan_fleet(self.fleet, level, hosts)
        scope = msg.host or f"the fleet ({len(self.fleet.hosts)} hosts)"
        self.push_screen(PlanScreen(p, scope, hosts, read_only=self.read_only))

    def _caller(self, host: str) -> Caller:
        w = self.by_name.get(host)
        if w is None:

            async def down(_m: str, _p: Any) -> Any:
                raise LinkDown(f"no host {host!r}")

            return down
        return w.call

    def on_apply_plan(self, msg: ApplyPlan) -> None:
        self.run_worker(self._apply_plan(msg), group="plans", exit_on_error=False)

    async def _apply_plan(self, msg: ApplyPlan) -> None:
        screen = msg.screen
        for i in msg.selected:
            out = await apply_move(
                screen.plan.moves[i], self._caller, audit=self.audit, read_only=self.read_only
            )
            screen.post_message(MoveDone(i, out.ok, out.message))
        await asyncio.sleep(self.settle_s)
        screen.post_message(
            PlanMeasured(measure(self.fleet, screen.plan.level, screen.hosts), self.settle_s)
        )
