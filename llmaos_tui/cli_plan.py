"""``llmaos-tui plan``: a balancing plan from the live fleet or a saved snapshot; ``--apply``.

``plan --snapshot FILE`` plans from a ``snapshot --json`` document (what-if, offline
review); without it the hosts are watched until they report, then planned. With
``--apply`` the moves are carried out through the agents (audited), and after a
settle time beta is measured again and printed against the prediction.
Exit codes: 0 planned (and applied), 1 a move failed or no host answered, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from llmaos_tui.balance import (
    AutoBalancer,
    Budget,
    Level,
    Plan,
    SnapshotError,
    StabilityConfig,
    plan_from_snapshot,
)
from llmaos_tui.fleet.link import Link
from llmaos_tui.fleet.state import FleetState, HostStatus
from llmaos_tui.fleet.watcher import HostWatcher
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.rebalance import apply_move, measure, plan_fleet, problem_from_fleet


def add_parser(sub: Any, common: Any) -> None:
    p = sub.add_parser("plan", help="plan balancing moves (and --apply them)")
    p.add_argument("--level", choices=["cores", "gpus", "hosts"], default=None,
                   help="cores within a host, GPUs, or hosts in the fleet (default: hosts "
                        "for several hosts, cores for one)")  # fmt: skip
    p.add_argument("--snapshot", type=Path, help="plan from a `snapshot --json` file")
    p.add_argument("--apply", action="store_true", help="carry the moves out")
    p.add_argument("--max-moves", type=int, default=32, help="at most this many moves (32)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds before measuring (5)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for hosts")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument(
        "--auto",
        action="store_true",
        help="keep balancing: re-plan every --period within the stability rules "
        "(smoothed loads, trigger band, cool-down), at most 4 moves a period",
    )
    p.add_argument("--period", type=float, default=30.0, help="seconds between auto plans (30)")
    p.add_argument("--periods", type=int, default=0, help="stop after N periods (0: never)")
    p.add_argument("--dry-run", action="store_true", help="with --auto: say, do not move")
    common(p)


def _print(plan: Plan, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        print(json.dumps({**plan.to_json(), **(extra or {})}, indent=2))
        return
    print(
        f"level {plan.level}: beta {plan.beta_before:.3f} -> predicted "
        f"{plan.beta_after_predicted:.3f} (floor {plan.floor:.3f}), {len(plan.moves)} moves"
        + (f" · {plan.note}" if plan.note else "")
    )
    for i, m in enumerate(plan.moves, 1):
        print(f"{i:>3}. {m.name or m.unit}: {m.src} -> {m.dst}  load {m.load:.2f}  "
              f"gain {m.gain:.3f}")  # fmt: skip
    for k, v in (extra or {}).items():
        print(f"{k}: {v}")


async def run_plan(args: argparse.Namespace, links: list[Link]) -> int:
    budget = Budget(max_moves=max(0, args.max_moves))
    if args.snapshot:
        if args.apply:
            print("llmaos-tui: a plan from a snapshot is for review; drop --apply",
                  file=sys.stderr)  # fmt: skip
            return 2
        try:
            doc = json.loads(args.snapshot.read_text())
            plan = plan_from_snapshot(doc, level=args.level or "hosts", budget=budget)
        except (OSError, ValueError, SnapshotError) as exc:
            print(f"llmaos-tui: {args.snapshot}: {exc}", file=sys.stderr)
            return 2
        _print(plan, args.json)
        return 0
    level: Level = args.level or ("cores" if len(links) == 1 else "hosts")
    fleet = FleetState()
    watchers = [HostWatcher(fleet.add(link.name), link, lambda _h: None) for link in links]
    tasks = [asyncio.ensure_future(w.run()) for w in watchers]
    try:
        deadline = time.monotonic() + args.timeout
        # Two process-table passes at least, so CPU% are measured, not first guesses.
        while time.monotonic() < deadline and not all(
            h.status is HostStatus.DOWN or (h.sample is not None and h.procs_version >= 2)
            for h in fleet.hosts.values()
        ):
            await asyncio.sleep(0.1)
        if not fleet.up_hosts():
            print("llmaos-tui: no host is up", file=sys.stderr)
            return 1
        if args.auto:
            return await _auto(args, fleet, watchers, level)
        plan = plan_fleet(fleet, level, budget=budget)
        if not args.apply:
            _print(plan, args.json)
            return 0
        by_name = {w.state.name: w for w in watchers}
        audit = AuditLog()
        results = []
        for m in plan.moves:
            out = await apply_move(m, lambda h: by_name[h].call, audit=audit,
                                   read_only=args.read_only)  # fmt: skip
            results.append({"unit": m.unit, "ok": out.ok, "message": out.message})
            if not args.json:
                print(("done: " if out.ok else "FAILED: ") + out.message, file=sys.stderr)
        await asyncio.sleep(args.settle)
        measured = measure(fleet, level)
        _print(plan, args.json, {"results": results, "beta_measured": round(measured, 4)})
        return 0 if all(r["ok"] for r in results) else 1
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


async def _auto(
    args: argparse.Namespace, fleet: FleetState, watchers: list[HostWatcher], level: Level
) -> int:
    """Auto mode: one decision per period; moves made unless --dry-run (off by default)."""
    by_name = {w.state.name: w for w in watchers}
    auto = AutoBalancer(StabilityConfig(), level=level, dry_run=args.dry_run)
    audit = AuditLog()
    failed = 0
    n = 0
    while not args.periods or n < args.periods:
        n += 1
        processors, units = problem_from_fleet(fleet, level)
        d = auto.step(processors, units)
        line: dict[str, Any] = {
            "period": d.period, "beta_smoothed": round(d.beta_smoothed, 4),
            "floor": round(d.floor, 4), "triggered": d.triggered, "reason": d.reason,
            "moves": [m.to_json() for m in d.moves], "dry_run": args.dry_run, "results": [],
        }  # fmt: skip
        if not args.dry_run:
            for m in d.moves:
                out = await apply_move(m, lambda h: by_name[h].call, audit=audit,
                                       read_only=args.read_only)  # fmt: skip
                line["results"].append({"unit": m.unit, "ok": out.ok, "message": out.message})
                failed += not out.ok
        if args.json:
            print(json.dumps(line), flush=True)
        else:
            print(f"period {d.period}: beta {d.beta_smoothed:.3f} (floor {d.floor:.3f}) "
                  f"{len(d.moves)} moves{' (dry run)' if args.dry_run else ''}: {d.reason}",
                  flush=True)  # fmt: skip
        if not args.periods or n < args.periods:
            await asyncio.sleep(args.period)
    return 1 if failed else 0
