"""``llmaos-tui plan``: a balancing plan from the live fleet or a saved snapshot; ``--apply``.

``plan --snapshot FILE`` plans from a ``snapshot --json`` document (what-if, offline
review); without it the hosts are watched until they report, then planned. With
``--apply`` the moves are carried out through the agents (audited), and after a
settle time beta is measured again and printed against the prediction.
``--units requests,containers`` (hosts level; default both) says what a plan may move:
waiting requests, running containers, or both. A container moves through the journaled
container move, over the same SSH connections the hosts are watched on, with the move
journal and audit log of ``llmaos-tui move`` (unfinished moves of an earlier console are
finished first).
Exit codes: 0 planned (and applied), 1 a move failed or no host answered, 2 usage.

Unit names, hosts, notes and the moves' messages are the hosts' text: every text line
goes through :func:`_say` (cleaned, :func:`llmaos_agent.safetext.clean`); ``--json`` is
exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from llmaos_agent.safetext import clean
from llmaos_tui.balance import (
    AutoBalancer,
    Budget,
    Level,
    Plan,
    SnapshotError,
    StabilityConfig,
    plan_from_snapshot,
)
from llmaos_tui.cli_args import NO_HOSTS, seconds
from llmaos_tui.fleet.link import Link, LinkDown
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.fleet.watcher import HostWatcher
from llmaos_tui.fleet.watching import Watching
from llmaos_tui.ops.audit import AuditLog, identity_of
from llmaos_tui.ops.engine_pool import EnginePool
from llmaos_tui.ops.journal import OPEN_ERRORS
from llmaos_tui.ops.moves import Moves
from llmaos_tui.ops.rebalance import (
    HOST_UNITS,
    NOT_TRIED,
    ContainerMoves,
    HostUnits,
    Outcome,
    apply_move,
    constraints_for,
    measure,
    plan_fleet,
    problem_from_fleet,
)

if TYPE_CHECKING:
    from llmaos_tui.balance import Move
    from llmaos_tui.ops.container_move import Progress
    from llmaos_tui.slurm.plan import Outcome as SlurmOutcome
    from llmaos_tui.slurm.plan import SlurmPlan


def add_parser(sub: Any, common: Any) -> None:
    p = sub.add_parser("plan", help="plan balancing moves (and --apply them)")
    p.add_argument("--level", choices=["cores", "gpus", "hosts"], default=None,
                   help="cores within a host, GPUs, or hosts in the fleet (default: hosts "
                        "for several hosts, cores for one)")  # fmt: skip
    p.add_argument("--snapshot", type=Path, help="plan from a `snapshot --json` file")
    p.add_argument("--units", type=units_arg, default=None, metavar="KINDS",
                   help="what a hosts-level plan may move: requests, containers, or both "
                        "comma-separated (default requests,containers; with --auto "
                        "requests only)")  # fmt: skip
    p.add_argument("--apply", action="store_true", help="carry the moves out")
    p.add_argument("--stop-on-failure", action="store_true",
                   help="with --apply: after a move fails, try none of the rest")  # fmt: skip
    p.add_argument("--max-moves", type=int, default=32, help="at most this many moves (32)")
    p.add_argument("--settle", type=seconds, default=5.0, help="seconds before measuring (5)")
    p.add_argument("--timeout", type=seconds, default=20.0, help="seconds to wait for hosts")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument(
        "--auto",
        action="store_true",
        help="keep balancing: re-plan every --period within the stability rules "
        "(smoothed loads, trigger band, cool-down), at most 4 moves a period",
    )
    p.add_argument("--period", type=seconds, default=30.0, help="seconds between auto plans (30)")
    p.add_argument("--periods", type=int, default=0, help="stop after N periods (0: never)")
    p.add_argument("--dry-run", action="store_true", help="with --auto: say, do not move")
    p.add_argument("--slurm", metavar="CLUSTER",
                   help="plan for this Slurm cluster of the hosts file: pending jobs exclude "
                        "hot nodes (ExcNodeList)")  # fmt: skip
    p.add_argument("--hot", type=float, default=None, metavar="LOAD",
                   help="with --slurm: a node is hot from this CPULoad per CPU (0.9)")  # fmt: skip
    common(p)


def _say(text: str, *, err: bool = False, flush: bool = False) -> None:
    """A line of text output, cleaned: it names hosts' units and their errors."""
    print(clean(text), file=sys.stderr if err else sys.stdout, flush=flush)


def units_arg(text: str) -> frozenset[HostUnits]:
    """``requests,containers`` -> the kinds a host-level plan may move (argparse type)."""
    names = {t.strip() for t in text.split(",") if t.strip()}
    unknown = names - HOST_UNITS
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!a}: name requests, containers or both (comma-separated)"
        )
    return frozenset(cast("set[HostUnits]", names))


class _Containers:
    """The container side of applying plans, through the one move service
    (:class:`~llmaos_tui.ops.moves.Moves`) over the links the fleet is watched on: its
    journal opened, and earlier consoles' unfinished moves finished, on the first container
    move; progress lines on stderr."""

    def __init__(self, fleet: FleetState, watchers: list[HostWatcher], quiet: bool) -> None:
        by_name = {w.state.name: w for w in watchers}
        pool = EnginePool(lambda h: by_name[h].link if h in by_name else None, fleet.hosts.get)
        self.audit = AuditLog(identity_for=identity_of({n: w.link for n, w in by_name.items()}))
        self.service = Moves(pool.get, self.audit, close_engines=pool.aclose)
        self.quiet = quiet
        self._recovered = False

    async def moves(self) -> ContainerMoves | None:
        """What apply_move needs for a container; None (the move then fails, saying why)
        when the move journal cannot be opened."""
        try:
            moves = self.service.for_plans(None if self.quiet else _progress)
        except OPEN_ERRORS as exc:
            _say(f"llmaos-tui: cannot open the move journal: {exc}", err=True)
            return None
        if not self._recovered:
            self._recovered = True
            await self._recover()
        return moves

    async def _recover(self) -> None:
        """Finish the moves an earlier console left unfinished, as ``move`` does first."""
        try:
            done = await self.service.recover()
        except ImportError:
            return  # no docker SDK: no move can have been made from here either
        except OPEN_ERRORS as exc:
            _say(f"llmaos-tui: recovering unfinished moves: {exc}", err=True)
            return
        for r in done:
            _say(f"llmaos-tui: an unfinished move of {r.container} ({r.source} -> "
                 f"{r.target}): {r.outcome} {r.message}".rstrip(), err=True)  # fmt: skip

    async def aclose(self) -> None:
        await self.service.aclose()


def _progress(m: Move, p: Progress) -> None:
    if p.state in ("start", "done", "rollback"):  # not each chunk's bytes
        extra = f" ({p.bytes / (1 << 20):.1f} MiB)" if p.bytes else ""
        msg = f": {p.message}" if p.message else ""
        _say(f"  {m.name or m.unit} {p.step}: {p.state}{extra}{msg}", err=True)


async def _apply(
    m: Move, by_name: dict[str, HostWatcher], audit: AuditLog, read_only: bool,
    containers: _Containers,
) -> Outcome:  # fmt: skip
    moves = await containers.moves() if m.kind == "container" and not read_only else None
    return await apply_move(m, lambda h: by_name[h].call, audit=audit, read_only=read_only,
                            containers=moves)  # fmt: skip


def _print(plan: Plan, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        print(json.dumps({**plan.to_json(), **(extra or {})}, indent=2))
        return
    _say(
        f"level {plan.level}: beta {plan.beta_before:.3f} -> predicted "
        f"{plan.beta_after_predicted:.3f} (floor {plan.floor:.3f}), {len(plan.moves)} moves"
        + (f" · {plan.note}" if plan.note else "")
    )
    for i, m in enumerate(plan.moves, 1):
        _say(f"{i:>3}. {m.name or m.unit}: {m.src} -> {m.dst}  load {m.load:.2f}  "
             f"gain {m.gain:.3f}")  # fmt: skip
    for k, v in (extra or {}).items():
        _say(f"{k}: {v}")


async def run_plan(args: argparse.Namespace, links: list[Link]) -> int:
    if getattr(args, "slurm", None):
        return await _slurm_plan(args)
    if getattr(args, "hot", None) is not None:
        print("llmaos-tui: --hot is for a Slurm plan: use it with --slurm", file=sys.stderr)
        return 2
    budget = Budget(max_moves=max(0, args.max_moves))
    if args.snapshot and args.units is not None:
        print("llmaos-tui: --units filters the live fleet's units; a snapshot's are its own",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.snapshot:
        if args.apply:
            print("llmaos-tui: a plan from a snapshot is for review; drop --apply",
                  file=sys.stderr)  # fmt: skip
            return 2
        try:
            doc = json.loads(args.snapshot.read_text())
            plan = plan_from_snapshot(doc, level=args.level or "hosts", budget=budget)
        except (OSError, ValueError, SnapshotError) as exc:
            _say(f"llmaos-tui: {args.snapshot}: {exc}", err=True)
            return 2
        _print(plan, args.json)
        return 0
    level: Level = args.level or ("cores" if len(links) == 1 else "hosts")
    if args.units is not None and level != "hosts":
        print("llmaos-tui: --units chooses what moves between hosts: use it with "
              "--level hosts", file=sys.stderr)  # fmt: skip
        return 2
    if not links:
        print(f"llmaos-tui: {NO_HOSTS}", file=sys.stderr)
        return 2
    async with Watching(links) as w:
        return await _plan_live(args, w, level, budget)


def _measured(h: HostState) -> bool:
    """Down, or sampled with two process-table passes (CPU% measured, not first guesses)."""
    return h.status is HostStatus.DOWN or (h.sample is not None and h.procs_version >= 2)


async def _plan_live(args: argparse.Namespace, w: Watching, level: Level, budget: Budget) -> int:
    fleet, watchers = w.fleet, w.watchers
    containers = _Containers(fleet, watchers, quiet=args.json)
    try:
        await w.until(_measured, args.timeout)
        if not fleet.up_hosts():
            print("llmaos-tui: no host is up", file=sys.stderr)
            return 1
        if args.auto:
            return await _auto(args, fleet, watchers, level, containers)
        plan = plan_fleet(fleet, level, budget=budget, units=args.units)
        if not args.apply:
            _print(plan, args.json)
            return 0
        by_name = {w.state.name: w for w in watchers}
        audit = containers.audit
        results: list[dict[str, Any]] = []
        for m in plan.moves:
            if args.stop_on_failure and not all(r["ok"] for r in results):
                why = f"{NOT_TRIED}: an earlier move failed"
                results.append({"unit": m.unit, "ok": False, "message": why, "tried": False})
                continue
            out = await _apply(m, by_name, audit, args.read_only, containers)
            results.append({"unit": m.unit, "ok": out.ok, "message": out.message})
            if not args.json:
                _say(("done: " if out.ok else "FAILED: ") + out.message, err=True)
        await asyncio.sleep(args.settle)
        measured = measure(fleet, level)
        _print(plan, args.json, {"results": results, "beta_measured": round(measured, 4)})
        return 0 if all(r["ok"] for r in results) else 1
    finally:
        await containers.aclose()  # the forwards first, while their connections are up


async def _auto(
    args: argparse.Namespace,
    fleet: FleetState,
    watchers: list[HostWatcher],
    level: Level,
    containers: _Containers,
) -> int:
    """Auto mode: one decision per period; moves made unless --dry-run (off by default)."""
    by_name = {w.state.name: w for w in watchers}
    # Unattended, only what moves without a pause of service: a container move stops it
    # for seconds, so auto mode moves containers only when --units names them.
    units: frozenset[HostUnits] = args.units if args.units is not None else frozenset({"requests"})
    auto = AutoBalancer(StabilityConfig(), level=level, dry_run=args.dry_run)
    audit = containers.audit
    failed = 0
    n = 0
    while not args.periods or n < args.periods:
        n += 1
        processors, found = problem_from_fleet(fleet, level, units=units)
        auto.constraints = constraints_for(fleet, processors, found)
        d = auto.step(processors, found)
        line: dict[str, Any] = {
            "period": d.period, "beta_smoothed": round(d.beta_smoothed, 4),
            "floor": round(d.floor, 4), "triggered": d.triggered, "reason": d.reason,
            "moves": [m.to_json() for m in d.moves], "dry_run": args.dry_run, "results": [],
        }  # fmt: skip
        if not args.dry_run:
            for m in d.moves:
                out = await _apply(m, by_name, audit, args.read_only, containers)
                line["results"].append({"unit": m.unit, "ok": out.ok, "message": out.message})
                failed += not out.ok
        if args.json:
            print(json.dumps(line), flush=True)
        else:
            _say(f"period {d.period}: beta {d.beta_smoothed:.3f} (floor {d.floor:.3f}) "
                 f"{len(d.moves)} moves{' (dry run)' if args.dry_run else ''}: {d.reason}",
                 flush=True)  # fmt: skip
        if not args.periods or n < args.periods:
            await asyncio.sleep(args.period)
    return 1 if failed else 0


# --------------------------------------------------------------------------- Slurm


async def _slurm_plan(args: argparse.Namespace) -> int:
    """``plan --slurm CLUSTER [--hot LOAD] [--apply]``: pending jobs of the cluster move off
    its hot nodes (:mod:`llmaos_tui.slurm.plan`), each change audited."""
    from llmaos_tui.cli_requests import slurm_clusters  # noqa: PLC0415
    from llmaos_tui.fleet.inventory import InventoryError  # noqa: PLC0415
    from llmaos_tui.ops.changes import ReadOnlyConsole  # noqa: PLC0415
    from llmaos_tui.slurm import SlurmRefused  # noqa: PLC0415
    from llmaos_tui.slurm.plan import HOT_LOAD, apply_plan, plan_cluster  # noqa: PLC0415

    if args.snapshot or args.auto or args.units is not None or args.level not in (None, "hosts"):
        print("llmaos-tui: --slurm plans a cluster's pending jobs: without --snapshot, "
              "--auto, --units or --level", file=sys.stderr)  # fmt: skip
        return 2
    hot = HOT_LOAD if args.hot is None else args.hot
    if not hot > 0:
        print("llmaos-tui: --hot is a load per CPU above 0", file=sys.stderr)
        return 2
    try:
        clusters = slurm_clusters(args)
    except InventoryError as exc:
        _say(f"llmaos-tui: {exc}", err=True)
        return 2
    c = next((x for x in clusters if x.name == args.slurm), None)
    if c is None:
        known = ", ".join(x.name for x in clusters) or "none in the hosts file"
        _say(f"llmaos-tui: no Slurm cluster {args.slurm!r} (clusters: {known})", err=True)
        return 2
    where = f"slurm:{c.name} ({c.runner.where})"
    failures = (SlurmRefused, ReadOnlyConsole, LinkDown, OSError)
    try:
        plan = await plan_cluster(c, hot_load=hot, max_moves=max(0, args.max_moves))
        outcomes: list[SlurmOutcome] = []
        if args.apply and plan.moves:
            runner = c.runner
            audit = AuditLog(identity_for=lambda _host: runner.login)
            outcomes = await apply_plan(
                c, plan, audit=audit, read_only=getattr(args, "read_only", False),
                stop_on_failure=args.stop_on_failure,
            )  # fmt: skip
    except failures as exc:
        _say(f"{where}: {exc}", err=True)
        return 1
    finally:
        await c.runner.close()
    _print_slurm(plan, outcomes, where, args.json, applied=args.apply)
    return 0 if all(o.ok for o in outcomes) else 1


def _print_slurm(
    plan: SlurmPlan, outcomes: list[SlurmOutcome], where: str, as_json: bool, *, applied: bool
) -> None:
    if as_json:
        doc = plan.to_dict()
        if applied:
            doc["applied"] = [{"job": m["job"], "result": o.result} for m, o in
                              zip(doc["moves"], outcomes, strict=False)]  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        hot_text = ", ".join(f"{n} {v:.2f}" for n, v in plan.hot) or "none"
        _say(f"{where}: hot nodes (CPULoad per CPU >= {plan.hot_load:g}): {hot_text}")
        results = {o.move.job_id: o.result for o in outcomes}
        for m in plan.moves:
            done = f"  [{results[m.job_id]}]" if m.job_id in results else ""
            _say(f"  slurm:{plan.cluster}:{m.job_id} ({m.user}): ExcNodeList="
                 f"{','.join(m.exclude)} (adds {','.join(m.added)}){done}")  # fmt: skip
        for x in plan.left:
            _say(f"  slurm:{plan.cluster}:{x.job_id} left: {x.why}")
        if not plan.moves:
            _say("  no pending job to move")
