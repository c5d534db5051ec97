"""The migration planner: an ordered list of moves that lowers beta with few, cheap moves.

The greedy (:mod:`.greedy`: best-improvement single moves on their exact gain, and
compound moves that make room for a large unit) makes the plan; it stops at the
budget (moves, cost) or when no move gains the minimum, ``Budget.min_gain`` of beta
if the caller sets one, else derived from the instance (:mod:`.thresholds`). On
small instances (a few processors, a few dozen units) a local search and a bounded
exact search then refine the end state, with no more moves (:mod:`.exact`).

Also here: :func:`floor`, a lower bound on beta that no number of moves can beat,
and :func:`k_move_bound`, one that no plan of at most k moves can beat (the
benchmark measures the greedy against both). Pure: no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from llmaos_tui.balance.bounds import max_excess_drop
from llmaos_tui.balance.exact import refine as refined
from llmaos_tui.balance.exact import solve
from llmaos_tui.balance.greedy import finish, greedy_plan, run, single_move_gain, start
from llmaos_tui.balance.model import Budget, Constraints, Level, Plan, Processor, Unit
from llmaos_tui.balance.state import State, base_of, floor_of, ordered
from llmaos_tui.balance.thresholds import plan_min_gain

__all__ = ["floor", "k_move_bound", "plan", "single_move_gain"]

# Up to this many units x processors, a bounded exact search refines the greedy's plan.
_EXACT_WORK = 400
_EXACT_NODES = 20_000


def plan(
    processors: Sequence[Processor],
    units: Sequence[Unit],
    *,
    level: Level = "cores",
    budget: Budget | None = None,
    constraints: Constraints | None = None,
    refine: bool = True,
) -> Plan:
    """Plan moves that lower beta; the processors' loads and the units are not changed.

    ``refine=False`` gives the greedy alone (the benchmark measures both).
    """
    budget = budget or Budget()
    constraints = constraints or Constraints()
    if not refine:
        return greedy_plan(processors, units, level=level, budget=budget, constraints=constraints)
    st, slots, before, lower = start(processors, units, constraints)
    if st.total <= 0.0:
        return Plan(level, 0.0, 0.0, 0.0, (), slots, "no load")
    min_gain = plan_min_gain(st, budget, lower)
    moves = run(st, budget, min_gain)
    if moves and budget.max_cost is None and len(st.units) * len(st.procs) <= _EXACT_WORK:
        # Small instance: the greedy's choices are never revisited, and on a handful of
        # processors that can cost a few hundredths of beta. Local search over end
        # states with no more moves than the greedy made (from its plan and from its
        # plans with one choice taken away), then a bounded exact search with the best
        # of those as incumbent, find the optimum or a better plan, or give the
        # greedy's plan back unchanged.
        start_st = refined(
            processors, units, [(m.unit, m.dst) for m in moves], constraints, budget.min_gain
        )
        opt = solve(
            processors,
            units,
            max_moves=len(moves),
            constraints=constraints,
            node_limit=_EXACT_NODES,
            incumbent=(start_st.beta, start_st.moves),
        )
        # The refined plan must beat the greedy's by at least what one move must gain
        # (another plan, for less, is not worth the operator's review).
        tol = 1e-12 * max(1.0, st.total)
        if opt.beta * st.total < st.dev - max(tol, min_gain(st)):
            found = ordered(processors, units, constraints, dict(opt.moves), "refined")
            if found is not None:
                st, moves = found
    return finish(st, level, before, lower, moves, slots)


def _pinned_base(
    processors: Sequence[Processor], units: Sequence[Unit], constraints: Constraints
) -> tuple[State, list[float], list[list[float]]]:
    st = State.build(processors, units, constraints)
    base, movable = base_of(st)
    return st, base, movable


def floor(
    processors: Sequence[Processor],
    units: Sequence[Unit],
    constraints: Constraints | None = None,
) -> float:
    """A lower bound on beta that no plan can beat, however many moves it makes.

    Per domain: what cannot move (background and pinned units) stays where it is, so
    each processor's excess is at least that of its fixed base ``p_i`` (the rest of
    the load poured as a fluid into deficits: that relaxation is exactly reachable when
    units are tiny). A unit of load w adds at least ``g(p_min + w) - g(p_min)`` of
    excess wherever it lands (``g(x) = max(0, x - T)`` is convex, so stacking units
    costs no less than the sum of their increments on the least loaded base). Memory,
    GPU, capacity and anti-affinity limits are ignored: they can only raise the optimum.
    """
    return floor_of(State.build(processors, units, constraints or Constraints()))


def k_move_bound(
    processors: Sequence[Processor],
    units: Sequence[Unit],
    k: int,
    constraints: Constraints | None = None,
) -> float:
    """A lower bound on beta after at most ``k`` moves (each unit moved at most once).

    The largest of four valid bounds. Excess side: a processor that gives up m of
    its movable units loses at most the m largest, so its excess falls by at most
    ``min(e_i, top_m(i))``. Deficit side: one that receives m units gains at most the
    m largest movable units of its domain. Both are concave in m, so the best share
    of k moves is found greedily. Third, :func:`.bounds.max_excess_drop`, which
    counts that a unit larger than a deficit overfills it and that a processor sent
    below its target must be refilled (proved in :mod:`.bounds`). And :func:`floor`.
    """
    constraints = constraints or Constraints()
    st, _base, movable = _pinned_base(processors, units, constraints)
    if st.total <= 0.0:
        return 0.0
    excess0 = st.dev / 2.0
    n = len(st.procs)
    exc = [st.load[i] - st.target[i] for i in range(n)]
    src_lists = [sorted((w for w, _k in st.on[i]), reverse=True) for i in range(n)]
    drop_src = _greedy_share(k, [(max(0.0, exc[i]), src_lists[i]) for i in range(n)])
    dom_lists = [sorted(m, reverse=True) for m in movable]
    drop_dst = _greedy_share(k, [(max(0.0, -exc[i]), dom_lists[st.dom[i]]) for i in range(n)])
    drop_room = max_excess_drop(
        [(max(0.0, exc[i]), max(0.0, -exc[i]), src_lists[i]) for i in range(n) if src_lists[i]],
        [max(0.0, -x) for x in exc],
        k,
    )
    bound = 2.0 * (excess0 - min(drop_src, drop_dst, drop_room)) / st.total
    return max(bound, floor(processors, units, constraints))


def _greedy_share(k: int, items: list[tuple[float, list[float]]]) -> float:
    """max sum_i min(cap_i, sum of the first m_i of ws_i) over sum m_i <= k (concave pieces)."""
    heap: list[tuple[float, int, int, float]] = []
    for idx, (cap, ws) in enumerate(items):
        if cap > 0.0 and ws:
            heapq.heappush(heap, (-min(cap, ws[0]), idx, 1, min(cap, ws[0])))
    total = 0.0
    for _ in range(k):
        if not heap:
            break
        neg, idx, m, taken = heapq.heappop(heap)
        total += -neg
        cap, ws = items[idx]
        if m < len(ws) and taken < cap:
            nxt = min(cap, taken + ws[m]) - taken
            if nxt > 0.0:
                heapq.heappush(heap, (-nxt, idx, m + 1, taken + nxt))
    return total
