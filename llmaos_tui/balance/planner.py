"""The migration planner: an ordered list of moves that lowers beta with few, cheap moves.

Method (issue 5): best-improvement greedy on the exact gain of a single move. With
``D = sum_i |L_i - T_i|`` (beta is ``D / L``), moving load ``w`` from a processor
with excess ``e = L_s - T_s > 0`` to one with deficit ``d = T_t - L_t > 0`` changes
D by ``-2 * min(w, e, d, e + d - w)``, and by nothing better otherwise. So for a
unit the best destination is the feasible one with the largest deficit, or, when
several take the whole unit (``d >= w <= e``: all gain ``2w``), the one it fills
best; each step takes the move with the largest gain over all units, ties broken by
the larger drop of the variance of loads, then by the lower migration cost. When
no single move gains, compound moves clear room for a large unit. It stops at the
budget (moves, cost) or when no move gains ``Budget.min_gain`` of beta. On small
instances (a few processors, a few dozen units) a local search and a bounded exact
search then refine the end state, with no more moves (:mod:`.exact`).

Also here: :func:`floor`, a lower bound on beta that no number of moves can beat,
and :func:`k_move_bound`, one that no plan of at most k moves can beat (the
benchmark measures the greedy against both). Pure: no I/O.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmaos_tui.balance.bounds import max_excess_drop
from llmaos_tui.balance.model import (
    Budget,
    Constraints,
    Level,
    Move,
    Plan,
    Problem,
    Processor,
    Slot,
    Unit,
    beta_of,
)

_INF = math.inf
# How many large units and candidate rooms a stalled plan tries (the work is their product).
_ROOM_UNITS = 8
_ROOM_DESTS = 3
# Up to this many units x processors, a bounded exact search refines the greedy's plan.
_EXACT_WORK = 400
_EXACT_NODES = 20_000


def single_move_gain(w: float, e: float, d: float) -> float:
    """The decrease of ``sum |L_i - T_i|`` when ``w`` moves from excess ``e`` to deficit ``d``.

    Exact for ``e, d >= 0`` (a source over its target, a destination under its
    own); never positive gains are reported as they are (a move that does not help).
    """
    return 2.0 * min(w, e, d, e + d - w)


@dataclass
class _State:
    """Index-based working state: lists are faster than dicts in the inner loop."""

    procs: list[Processor]
    units: list[Unit]
    constraints: Constraints
    load: list[float] = field(default_factory=list)
    target: list[float] = field(default_factory=list)
    limit: list[float] = field(default_factory=list)
    mem: list[float] = field(default_factory=list)
    gpus: list[float] = field(default_factory=list)
    dom: list[int] = field(default_factory=list)
    members: list[list[int]] = field(default_factory=list)
    where: list[int] = field(default_factory=list)
    # Movable units on each processor, sorted by load, with their loads alongside
    # for bisect: the candidates nearest the ideal load are found in O(log n).
    on: list[list[tuple[float, int]]] = field(default_factory=list)
    occupied: set[tuple[str, int]] = field(default_factory=set)
    # load - target per processor, and per domain the pairs (exc, index) kept sorted
    # as moves are made: the largest deficits and excesses without re-sorting.
    exc: list[float] = field(default_factory=list)
    order: list[list[tuple[float, int]]] = field(default_factory=list)
    total: float = 0.0
    dev: float = 0.0

    @classmethod
    def build(
        cls, processors: Sequence[Processor], units: Sequence[Unit], constraints: Constraints
    ) -> _State:
        Problem(processors, units)  # refuses duplicate ids and unknown processors
        st = cls(list(processors), list(units), constraints)
        index = {p.id: i for i, p in enumerate(st.procs)}
        doms: dict[str, int] = {}
        unit_sum = [0.0] * len(st.procs)
        for u in st.units:
            unit_sum[index[u.processor]] += u.load
        for i, p in enumerate(st.procs):
            d = doms.setdefault(p.domain, len(doms))
            st.dom.append(d)
            # A processor carries at least its units (queued demand may not be measured yet).
            st.load.append(max(p.load, unit_sum[i]))
            st.limit.append(p.capacity * constraints.headroom if constraints.capacity else _INF)
            st.mem.append(_INF if p.mem_free is None or not constraints.memory else p.mem_free)
            st.gpus.append(_INF if p.gpus_free is None or not constraints.gpus else p.gpus_free)
        st.members = [[] for _ in doms]
        for i, d in enumerate(st.dom):
            st.members[d].append(i)
        # Domains need not be contiguous in the processor list.
        st.target = [0.0] * len(st.procs)
        for mem in st.members:
            dl = sum(st.load[i] for i in mem)
            dc = sum(st.procs[i].capacity for i in mem)
            for i in mem:
                st.target[i] = st.procs[i].capacity * dl / dc
        st.on = [[] for _ in st.procs]
        for k, u in enumerate(st.units):
            i = index[u.processor]
            st.where.append(i)
            if u.group is not None and constraints.anti_affinity:
                st.occupied.add((u.group, i))
            if not (u.pinned or u.id in constraints.frozen) and u.load > 0.0:
                st.on[i].append((u.load, k))
        for lst in st.on:
            lst.sort()
        st.total = sum(st.load)
        st.exc = [st.load[i] - st.target[i] for i in range(len(st.procs))]
        st.order = [sorted((st.exc[i], i) for i in mem) for mem in st.members]
        st.dev = sum(abs(x) for x in st.exc)
        return st

    def feasible(self, k: int, j: int) -> bool:
        u = self.units[k]
        if self.load[j] + u.load > self.limit[j] * (1 + 1e-12):
            return False
        if u.mem > self.mem[j] or u.gpus > self.gpus[j]:
            return False
        if self.constraints.forbidden and (u.id, self.procs[j].id) in self.constraints.forbidden:
            return False
        return not (u.group is not None and (u.group, j) in self.occupied)

    def apply(self, k: int, j: int) -> float:
        """Move unit k to processor j; returns the decrease of D, recomputed."""
        u, i = self.units[k], self.where[k]
        w = u.load
        before = abs(self.load[i] - self.target[i]) + abs(self.load[j] - self.target[j])
        lst = self.on[i]
        pos = bisect_left(lst, (w, k))
        if pos < len(lst) and lst[pos] == (w, k):
            del lst[pos]
        # The unit is not put into on[j]: a plan moves a unit at most once, so that any
        # subset of its moves stays consistent when the operator deselects some.
        self.load[i] -= w
        self.load[j] += w
        self.mem[i] += u.mem
        self.mem[j] -= u.mem
        self.gpus[i] += u.gpus
        self.gpus[j] -= u.gpus
        if u.group is not None and self.constraints.anti_affinity:
            self.occupied.discard((u.group, i))
            self.occupied.add((u.group, j))
        self.where[k] = j
        order = self.order[self.dom[i]]
        for p in (i, j):
            del order[bisect_left(order, (self.exc[p], p))]
            self.exc[p] = self.load[p] - self.target[p]
            insort(order, (self.exc[p], p))
        after = abs(self.exc[i]) + abs(self.exc[j])
        self.dev += after - before
        return before - after

    def revert(self, k: int, i: int) -> None:
        """Undo :meth:`apply` of unit k, back to processor i (a trial that did not pay)."""
        self.apply(k, i)
        insort(self.on[i], (self.units[k].load, k))


def _best_move(
    st: _State, tol: float, cost_left: float
) -> tuple[float, float, float, int, int] | None:
    """The best single move now: (gain, variance change, cost, unit, destination)."""
    exc = st.exc
    # Sources by decreasing excess, ties to the lower index (the domains' sorted pairs,
    # read from the top, hold them).
    tops: list[tuple[float, int]] = []
    for order in st.order:
        for e, i in reversed(order):
            if e <= tol:
                break
            if st.on[i]:
                tops.append((-e, i))
    tops.sort()
    sources = [i for _e, i in tops]
    best: tuple[float, float, float, int, int] | None = None
    best_gain = tol
    for i in sources:
        e = exc[i]
        if 2.0 * e <= best_gain:
            break  # sources come by decreasing excess: none further on can do better
        dlist = st.order[st.dom[i]]
        dmax = -dlist[0][0]
        if dmax <= tol or 2.0 * min(e, dmax) <= best_gain:
            continue
        lst = st.on[i]
        if 2.0 * min(lst[-1][0], e, dmax) <= best_gain:
            continue
        # Candidates fan out from the load that gains most against the top destination,
        # (e + dmax) / 2; on each side the best possible gain only falls, so each side
        # stops as soon as it cannot beat what is found.
        centre = (e + dmax) / 2.0
        pos = bisect_left(lst, (centre, -1))
        left, right = pos - 1, pos
        while left >= 0 or right < len(lst):
            take_right = right < len(lst) and (
                left < 0 or lst[right][0] - centre <= centre - lst[left][0]
            )
            if take_right:
                w, k = lst[right]
                bound = 2.0 * min(e + dmax - w, e, dmax)
                if bound <= best_gain and (best is None or bound < best_gain - tol):
                    right = len(lst)
                    continue
                right += 1
            else:
                w, k = lst[left]
                bound = 2.0 * min(w, e, dmax)
                if bound <= best_gain and (best is None or bound < best_gain - tol):
                    left = -1
                    continue
                left -= 1
            u = st.units[k]
            if u.cost > cost_left:
                continue
            for neg_d, j in dlist:
                if neg_d >= -tol:
                    break  # the rest are not under their targets
                d = -neg_d
                g = single_move_gain(w, e, d)
                if g < best_gain - tol:
                    break  # deficits only fall further down the list
                if j == i or not st.feasible(k, j):
                    continue
                dst = j
                if w <= e and w <= d:
                    # Every destination with room for the whole unit gains the same:
                    # take the one it fills best (best fit), keeping large deficits for
                    # large units. On 500 hosts this ends at beta 0.009-0.011 where the
                    # largest deficit ended at 0.013-0.015.
                    pos = bisect_left(dlist, (-w, len(st.procs)))
                    for _neg_b, jb in reversed(dlist[:pos]):
                        if jb != i and st.feasible(k, jb):
                            dst = jb
                            break
                dvar = 2.0 * w * (st.load[dst] - st.load[i] + w)
                cand = (g, dvar, u.cost, k, dst)
                if (
                    best is None
                    or g > best[0] + tol
                    or (g >= best[0] - tol and (dvar, u.cost) < (best[1], best[2]))
                ):
                    best = cand
                    best_gain = max(best_gain, g)
                break  # the first feasible destination is this unit's best
    return best


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
    st = _State.build(processors, units, constraints)
    slots = tuple(Slot(p.id, p.domain, p.capacity, st.load[i]) for i, p in enumerate(st.procs))
    before = beta_of((s.domain, s.capacity, s.load) for s in slots)
    lower = _floor_of(st)  # before any move: the state is the input's
    moves: list[Move] = []
    if st.total <= 0.0:
        return Plan(level, 0.0, 0.0, 0.0, (), slots, "no load")
    tol = 1e-12 * max(1.0, st.total)
    cost_left = _INF if budget.max_cost is None else budget.max_cost
    min_dev_gain = max(budget.min_gain * st.total, tol)
    while budget.max_moves is None or len(moves) < budget.max_moves:
        left = _INF if budget.max_moves is None else budget.max_moves - len(moves)
        best = _best_move(st, tol, cost_left)
        if best is not None and best[0] >= min_dev_gain:
            steps = [(best[3], best[4])]
        else:
            steps = _best_room_move(st, tol, cost_left, left, min_dev_gain)
            if not steps:
                break
        for k, j in steps:
            cost_left -= st.units[k].cost
            moves.append(_make(st, k, j, "makes room" if len(steps) > 1 else ""))
    if (
        refine
        and moves
        and budget.max_cost is None
        and len(st.units) * len(st.procs) <= _EXACT_WORK
    ):
        # Small instance: the greedy's choices are never revisited, and on a handful of
        # processors that can cost a few hundredths of beta. Local search over end
        # states with no more moves than the greedy made (from its plan and from its
        # plans with one choice taken away), then a bounded exact search with the best
        # of those as incumbent, find the optimum or a better plan, or give the
        # greedy's plan back unchanged.
        from llmaos_tui.balance.exact import refine as refined  # noqa: PLC0415
        from llmaos_tui.balance.exact import solve  # noqa: PLC0415 (exact imports this module)

        start = refined(
            processors, units, [(m.unit, m.dst) for m in moves], constraints, budget.min_gain
        )
        opt = solve(
            processors,
            units,
            max_moves=len(moves),
            constraints=constraints,
            node_limit=_EXACT_NODES,
            incumbent=(start.beta, start.moves),
        )
        # The refined plan must beat the greedy's by at least what one move must gain
        # (another plan, for less, is not worth the operator's review).
        if opt.beta * st.total < st.dev - max(tol, budget.min_gain * st.total):
            found = _ordered(processors, units, constraints, dict(opt.moves), "refined")
            if found is not None:
                st, moves = found
    after = beta_of((p.domain, p.capacity, max(0.0, st.load[i])) for i, p in enumerate(st.procs))
    note = "" if moves else "no move gains enough"
    return Plan(level, before, after, min(lower, after), tuple(moves), slots, note)


def _ordered(
    processors: Sequence[Processor],
    units: Sequence[Unit],
    constraints: Constraints,
    target: dict[str, str],
    why: str,
) -> tuple[_State, list[Move]] | None:
    """Moves that reach the end state ``target`` (unit id -> processor id), in an order
    in which each is feasible when made, the best gain first; None if there is none."""
    st = _State.build(processors, units, constraints)
    index = {p.id: i for i, p in enumerate(st.procs)}
    todo = [(k, index[target[u.id]]) for k, u in enumerate(st.units) if u.id in target]
    out: list[Move] = []
    tol = 1e-12 * max(1.0, st.total)
    while todo:
        pick: tuple[float, int] | None = None
        for t, (k, j) in enumerate(todo):
            if st.feasible(k, j):
                i, w = st.where[k], st.units[k].load
                g = (
                    abs(st.load[i] - st.target[i])
                    + abs(st.load[j] - st.target[j])
                    - abs(st.load[i] - w - st.target[i])
                    - abs(st.load[j] + w - st.target[j])
                )
                if pick is None or g > pick[0] + tol:
                    pick = (g, t)
        if pick is None:
            return None
        k, j = todo.pop(pick[1])
        out.append(_make(st, k, j, why))
    return st, out


def _make(st: _State, k: int, j: int, why: str) -> Move:
    u, i = st.units[k], st.where[k]
    e, d = st.load[i] - st.target[i], st.target[j] - st.load[j]
    reason = f"{st.procs[i].id} {e:+.3g} from its target, {st.procs[j].id} {-d:+.3g}"
    real = st.apply(k, j)
    return Move(
        unit=u.id,
        src=st.procs[i].id,
        dst=st.procs[j].id,
        load=u.load,
        gain=real / st.total,
        beta_after=max(0.0, st.dev / st.total),
        reason=f"{reason} ({why})" if why else reason,
        kind=u.kind,
        name=u.name,
        cost=u.cost,
    )


def _best_room_move(
    st: _State, tol: float, cost_left: float, left: float, min_dev_gain: float
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
    n = len(st.procs)
    exc = st.exc
    big = sorted(
        ((w, k, i) for i in range(n) if exc[i] > tol for w, k in st.on[i][-2:]),
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
                (
                    (st.load[j] - sum(x for x, _k in st.on[j]) - st.target[j], j)
                    for j in st.members[d]
                ),
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
    st: _State, k: int, i: int, j: int, left: float, cost_left: float, tol: float
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


def _place(st: _State, k: int, not_here: int) -> int | None:
    """The feasible processor with the largest deficit for unit k, other than its own."""
    for _e, j in st.order[st.dom[not_here]]:
        if j != not_here and st.feasible(k, j):
            return j
    return None


def _pinned_base(
    processors: Sequence[Processor], units: Sequence[Unit], constraints: Constraints
) -> tuple[_State, list[float], list[list[float]]]:
    st = _State.build(processors, units, constraints)
    base, movable = _base_of(st)
    return st, base, movable


def _base_of(st: _State) -> tuple[list[float], list[list[float]]]:
    """Each processor's load without its movable units, and each domain's movable loads."""
    base = list(st.load)
    movable: list[list[float]] = [[] for _ in st.members]
    for i, lst in enumerate(st.on):
        for w, _k in lst:
            base[i] -= w
            movable[st.dom[i]].append(w)
    return base, movable


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
    return _floor_of(_State.build(processors, units, constraints or Constraints()))


def _floor_of(st: _State) -> float:
    """:func:`floor` of a state before any move."""
    base, movable = _base_of(st)
    if st.total <= 0.0:
        return 0.0
    excess = 0.0
    for d, mem in enumerate(st.members):
        fixed = sum(max(0.0, base[i] - st.target[i]) for i in mem)
        # Base minus target: the increment is measured against the processor's own target.
        slack = min(base[i] - st.target[i] for i in mem)
        extra = sum(max(0.0, slack + w) - max(0.0, slack) for w in movable[d])
        excess += fixed + extra
    return min(2.0 * excess / st.total, _beta_now(st))


def _beta_now(st: _State) -> float:
    return st.dev / st.total if st.total > 0 else 0.0


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
