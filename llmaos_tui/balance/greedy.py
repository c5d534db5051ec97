"""The planner's greedy: best-improvement single moves, and compound moves that make room.

Method (issue 5): best-improvement greedy on the exact gain of a single move. With
``D = sum_i |L_i - T_i|`` (beta is ``D / L``), moving load ``w`` from a processor
with excess ``e = L_s - T_s > 0`` to one with deficit ``d = T_t - L_t > 0`` changes
D by ``-2 * min(w, e, d, e + d - w)``, and by nothing better otherwise. So for a
unit the best destination is the feasible one with the largest deficit, or, when
several take the whole unit (``d >= w <= e``: all gain ``2w``), the one it fills
best; each step takes the move with the largest gain over all units, ties broken by
the larger drop of the variance of loads, then by the lower migration cost. When
no single move gains, compound moves clear room for a large unit. It stops at the
budget (moves, cost) or when no move gains the minimum (:mod:`.thresholds`).
:mod:`.frontier` keeps each source's best move between steps and re-scores only
what a move touched (the single moves); this module makes the moves and the
compound ones.

:mod:`.planner` refines small plans of this greedy; :mod:`.exact` starts from it.
Pure: no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from llmaos_tui.balance.frontier import Frontier
from llmaos_tui.balance.model import Budget, Constraints, Level, Move, Plan, Processor, Slot, Unit
from llmaos_tui.balance.state import INF, State, built, floor_of, make_move
from llmaos_tui.balance.thresholds import MinGain, plan_min_gain

# How many large units and candidate rooms a stalled plan tries (the work is their product).
_ROOM_UNITS = 8
_ROOM_DESTS = 3


def single_move_gain(w: float, e: float, d: float) -> float:
    """The decrease of ``sum |L_i - T_i|`` when ``w`` moves from excess ``e`` to deficit ``d``.

    Exact for ``e, d >= 0`` (a source over its target, a destination under its
    own); never positive gains are reported as they are (a move that does not help).
    """
    return 2.0 * min(w, e, d, e + d - w)


def greedy_plan(
    processors: Sequence[Processor],
    units: Sequence[Unit],
    *,
    level: Level = "cores",
    budget: Budget | None = None,
    constraints: Constraints | None = None,
) -> Plan:
    """The greedy's plan alone (what ``plan(..., refine=False)`` returns)."""
    st, slots, before, lower = start(processors, units, constraints or Constraints())
    if st.total <= 0.0:
        return Plan(level, 0.0, 0.0, 0.0, (), slots, "no load")
    moves = run(st, budget or Budget(), plan_min_gain(st, budget or Budget(), lower))
    return finish(st, level, before, lower, moves, slots)


def start(
    processors: Sequence[Processor], units: Sequence[Unit], constraints: Constraints
) -> tuple[State, tuple[Slot, ...], float, float]:
    """The state, the slots a plan keeps, beta before and the floor, before any move."""
    st = State.build(processors, units, constraints)
    slots = tuple(
        built(Slot, id=p.id, domain=p.domain, capacity=p.capacity, load=st.load[i])
        for i, p in enumerate(st.procs)
    )
    return st, slots, st.beta(), floor_of(st)


def finish(
    st: State, level: Level, before: float, lower: float, moves: list[Move], slots: tuple[Slot, ...]
) -> Plan:
    """The plan of the moves made on ``st``."""
    after = max(0.0, st.beta())
    note = "" if moves else "no move gains enough"
    return Plan(level, before, after, min(lower, after), tuple(moves), slots, note)


def run(st: State, budget: Budget, min_gain: MinGain) -> list[Move]:
    """Make the greedy's moves on ``st``, within ``budget``; ``min_gain`` says what a
    move must gain (of D, the deviation sum) given the state."""
    moves: list[Move] = []
    tol = 1e-12 * max(1.0, st.total)
    cost_left = INF if budget.max_cost is None else budget.max_cost
    frontier = Frontier(st, tol)
    while budget.max_moves is None or len(moves) < budget.max_moves:
        left = INF if budget.max_moves is None else budget.max_moves - len(moves)
        min_dev_gain = max(min_gain(st), tol)
        best = frontier.best(cost_left)
        if best is not None and best[0] >= min_dev_gain:
            steps = [(best[3], best[4])]
        else:
            steps = best_room_move(st, tol, cost_left, left, min_dev_gain)
            if not steps:
                break
        for k, j in steps:
            cost_left -= st.units[k].cost
            moves.append(make_move(st, k, j, "makes room" if len(steps) > 1 else ""))
    return moves


def best_room_move(
    st: State, tol: float, cost_left: float, left: float, min_dev_gain: float
) -> list[tuple[int, int]]:
    """When no single move gains: a large unit moved after clearing the way for it.

    Single moves stall when the units left on processors above target are larger
    than any deficit (a 1-core process where targets are half a core). Then the
    best compound move is: pick such a unit, a destination with little fixed load,
    move the large unit there, then move that destination's movable units (largest
    first) to where they fit best, the room just left behind included. Each compound
    is tried on the state and undone; the one with the largest gain per move wins, if
    it gains ``min_dev_gain`` per move.
    """
    big = sorted(
        ((w, k, i) for srcs in st.srcs for _key, i in srcs for w, k in st.on[i][-2:]),
        reverse=True,
    )[:_ROOM_UNITS]
    best: list[tuple[int, int]] = []
    best_rate = min_dev_gain
    # Fixed load = what stays whatever we evict; the least fixed load is the best room.
    # The states tried are undone, so these stay valid through the loop.
    fixed: dict[int, list[tuple[float, int]]] = {}
    for _w, k, i in big:
        if st.units[k].cost > cost_left:
            continue
        d = st.dom[i]
        if d not in fixed:
            fixed[d] = heapq.nsmallest(
                _ROOM_DESTS + 1,
                ((st.load[j] - st.on_load[j] - st.target[j], j) for j in st.members[d]),
            )
        rooms = [j for _f, j in fixed[d] if j != i][:_ROOM_DESTS]
        for j in rooms:
            steps = _try_room(st, k, i, j, left, cost_left, tol)
            if steps is None:
                continue
            gain, seq = steps
            rate = gain / len(seq)
            if rate > best_rate + tol:
                best, best_rate = seq, rate
    return best


def _try_room(
    st: State, k: int, i: int, j: int, left: float, cost_left: float, tol: float
) -> tuple[float, list[tuple[int, int]]] | None:
    # The large unit goes first, so the plan's order is feasible as written and the
    # evicted units may take the room it leaves on its source.
    if not st.feasible(k, j):
        return None
    dev0 = st.dev
    cost = st.units[k].cost
    evicted = list(reversed(st.on[j]))  # largest first; the moved unit is not among them
    st.apply(k, j)
    done: list[tuple[int, int]] = []
    for _x, ev in evicted:
        if st.load[j] - st.target[j] <= tol or len(done) + 1 >= left:
            break
        cost += st.units[ev].cost
        if cost > cost_left:
            break
        dst = _place(st, ev, j)
        if dst is not None:
            st.apply(ev, dst)
            done.append((ev, dst))
    gain = dev0 - st.dev
    for ev, _dst in reversed(done):
        st.revert(ev, j)
    st.revert(k, i)
    return gain, [(k, j), *done]


def _place(st: State, k: int, not_here: int) -> int | None:
    """The feasible processor with the largest deficit for unit k, other than its own."""
    for _e, j in st.order[st.dom[not_here]]:
        if j != not_here and st.feasible(k, j):
            return j
    return None
