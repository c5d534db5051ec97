"""The app's side of balancing: compute a plan, open its review, carry it out, measure.

A mixin of :class:`llmaos_tui.app.LlmaosApp`. Moves run one after another in an
async worker on the app's loop (each through its host's link, audited; a container
through both hosts' engines, its blocking docker calls on a worker thread); results,
a container move's steps and the measurement are posted to the review screen, never
drawn from the worker.

A plan reads the hosts' process tables (the cores level), which the console streams only
where needed: while a plan is worked out, open or carried out, :attr:`PlanActions.
plans_busy` or its screen has every host's on (:meth:`LlmaosApp.sync_procs`), and a cores
plan waits for the tables it reads to be in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, cast

from textual.app import App

from llmaos_tui.fleet.link import LinkDown
from llmaos_tui.screens.plan import (
    ApplyPlan,
    MoveDone,
    MoveProgress,
    OpenPlan,
    PlanMeasured,
    PlanReady,
    PlanScreen,
)

# The ops layer's planning and moves are imported when a plan is first asked for, not
# with the app: the console's first screen does not need them (docs/BENCHMARKS.md).
if TYPE_CHECKING:
    from llmaos_tui.balance import Level, Move
    from llmaos_tui.fleet.state import FleetState
    from llmaos_tui.fleet.watcher import HostWatcher
    from llmaos_tui.ops.audit import AuditLog
    from llmaos_tui.ops.container_move import Progress
    from llmaos_tui.ops.moves import Moves
    from llmaos_tui.ops.rebalance import Caller, ContainerMoves, HostUnits

TABLES_WAIT_S = 15.0
"""How long a cores plan waits for the process tables of hosts just turned on."""
SETTLE_S = 5.0
"""Seconds between the last move and the measurement: a few samples of the new state."""
PROGRESS_EVERY_S = 0.5
"""A container move's bytes are shown at most this often (its steps' starts always)."""


class PlanActions(App[None]):
    fleet: FleetState
    by_name: dict[str, HostWatcher]
    audit: AuditLog
    read_only: bool
    settle_s: float = SETTLE_S
    plans_busy: int = 0
    """Plans being worked out or carried out: every host's processes are wanted."""
    _hosts_changed: asyncio.Event

    def sync_procs(self) -> None:
        """Have the hosts' process tables streamed where needed (the app's)."""
        raise NotImplementedError

    def _plan_busy(self, delta: int) -> None:
        self.plans_busy += delta
        self.sync_procs()

    @property
    def moves(self) -> Moves:
        """The app's one service for container moves."""
        raise NotImplementedError

    def on_open_plan(self, msg: OpenPlan) -> None:
        level: Level = (
            "cores" if msg.level == "cores" else "gpus" if msg.level == "gpus" else "hosts"
        )
        hosts = [msg.host] if msg.host else None
        scope = msg.host or f"the fleet ({len(self.fleet.hosts)} hosts)"
        self.run_worker(
            self._plan_off_loop(level, scope, hosts, msg.units),
            group="plan-open", exclusive=True, exit_on_error=False,
        )  # fmt: skip

    async def _plan_off_loop(
        self, level: Level, scope: str, hosts: list[str] | None, units: frozenset[str] | None
    ) -> None:
        from llmaos_tui.ops.rebalance import plan_from, plan_input  # noqa: PLC0415

        # Counted here, not when asked: a worker that a second ask cancels before it ran
        # never reaches its ``finally``, and its count would keep every table on for good.
        self._plan_busy(+1)  # until its screen is up (or the planning failed)
        posted = False
        try:
            if level == "cores":
                await self._tables_in(hosts)
            # The fleet is read here, on the loop; the planning runs on a thread (a small
            # plan's exact refinement takes up to a few hundred ms, too long to hold the
            # screen).
            inp = plan_input(
                self.fleet, level, hosts, units=cast("frozenset[HostUnits] | None", units)
            )
            p = await asyncio.to_thread(plan_from, inp)
            self.post_message(PlanReady(p, scope, hosts, units))
            posted = True
        finally:
            if not posted:
                self._plan_busy(-1)

    async def _tables_in(self, hosts: list[str] | None) -> None:
        """Wait until each up host of the plan has its process table (a host turned on
        just now sends it at its next process pass), or TABLES_WAIT_S."""
        names = set(hosts) if hosts is not None else set(self.fleet.hosts)

        def missing() -> bool:
            return any(
                (h := self.fleet.hosts.get(n)) is not None and h.up and not h.procs for n in names
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + TABLES_WAIT_S
        while missing() and (left := deadline - loop.time()) > 0:
            self._hosts_changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._hosts_changed.wait(), left)

    def on_plan_ready(self, msg: PlanReady) -> None:
        if isinstance(self.screen, PlanScreen) and not self.screen.applying:
            self.pop_screen()  # planned again (``u``): this one replaces it
        self.push_screen(
            PlanScreen(msg.plan, msg.scope, msg.hosts, read_only=self.read_only, units=msg.units)
        )
        self._plan_busy(-1)  # the screen keeps them on while it is open

    def _caller(self, host: str) -> Caller:
        w = self.by_name.get(host)
        if w is None:

            async def down(_m: str, _p: Any) -> Any:
                raise LinkDown(f"no host {host!r}")

            return down
        return w.call

    def on_apply_plan(self, msg: ApplyPlan) -> None:
        self.run_worker(self._apply_plan(msg), group="plans", exit_on_error=False)

    def _container_moves(self, screen: PlanScreen) -> ContainerMoves | None:
        """The engines, journal and progress for the plan's container moves (None: the move
        journal cannot be opened; each container move then fails, saying so)."""
        from llmaos_tui.ops.journal import OPEN_ERRORS  # noqa: PLC0415

        index = {id(m): i for i, m in enumerate(screen.plan.moves)}
        last: dict[int, float] = {}

        def progress(m: Move, p: Progress) -> None:  # from the move's thread: post only
            i = index.get(id(m))
            if i is None:
                return
            if p.state == "bytes":
                now = time.monotonic()
                if now - last.get(i, 0.0) < PROGRESS_EVERY_S:
                    return
                last[i] = now
                of = f"/{p.total / 1e6:.0f}" if p.total else ""
                text = f"{p.step} {p.bytes / 1e6:.0f}{of} MB…"
            elif p.state == "start":
                text = f"{p.step}…"
            elif p.state == "rollback":
                text = f"rolling back: {p.message or p.step}…"
            else:
                return
            screen.post_message(MoveProgress(i, text))

        try:
            return self.moves.for_plans(progress)
        except OPEN_ERRORS as exc:
            self.notify(f"move journal: {exc}", severity="error", timeout=10)
            return None

    async def _apply_plan(self, msg: ApplyPlan) -> None:
        self._plan_busy(+1)  # its moves and measurement read the tables, screen or none
        try:
            await self._carry_out(msg)
        finally:
            self._plan_busy(-1)

    async def _carry_out(self, msg: ApplyPlan) -> None:
        from llmaos_tui.ops.rebalance import NOT_TRIED, apply_move, measure  # noqa: PLC0415

        screen = msg.screen
        containers: ContainerMoves | None = None
        if any(screen.plan.moves[i].kind == "container" for i in msg.selected):
            containers = self._container_moves(screen)
        failed = False
        for i in msg.selected:
            if failed and msg.stop_on_failure:
                why = f"{NOT_TRIED}: an earlier move failed"
                screen.post_message(MoveDone(i, False, why, tried=False))
                continue
            out = await apply_move(
                screen.plan.moves[i], self._caller, audit=self.audit, read_only=self.read_only,
                containers=containers,
            )  # fmt: skip
            failed |= not out.ok
            screen.post_message(MoveDone(i, out.ok, out.message))
        await asyncio.sleep(self.settle_s)
        screen.post_message(
            PlanMeasured(measure(self.fleet, screen.plan.level, screen.hosts), self.settle_s)
        )
