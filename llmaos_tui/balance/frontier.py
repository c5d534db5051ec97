"""The greedy's frontier: the best move from each source, re-scored only where a move touched it.

A best-improvement greedy that rescans the sources at every step finds again most of
what it found the step before: a move changes two processors, and on 4,096 cores or
2,000 hosts the next best move is, most of the time, one that was scored already. So
the frontier keeps a heap, largest gain first, of one entry per source processor p:
at first the bound ``2 * key`` of :attr:`.State.srcs` on any move from p; once
scored, p's best move, taken as it is while p and that move's destination are
unchanged (re-scored when it comes to the top otherwise).

Why the entries stay upper bounds: the gain of a move from p, ``2 min(w, e, d, e +
d - w)``, does not rise when p gives a unit up (its excess e falls) nor when the
destination receives one (its deficit d falls). What can raise it is p receiving a
unit (a fresh bound entry is pushed for it, and its older entries are dropped) and a
destination gaining room, which only a move *from* that destination does. That last
case the frontier does not chase: a processor sent below its target by a move is seen
by each source the next time that source is scored (a move changes its source or its
destination, so the sources that matter are re-scored soon), not at once. Scoring
every source again for each such processor cost more than all the rest (2,000 hosts:
0.4 s of a second), and the plans end where the full rescan ended them (256 cores:
the same gaps to the floor; 4,096 cores and 2,000 hosts: the same beta to 1e-4).

Ties within ``tol`` are broken as :mod:`.greedy` describes within a source; across
sources by the variance change, then the cost. Pure: no I/O.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left

from llmaos_tui.balance.state import INF, State

# A move: (gain of D, variance change, cost, unit, destination).
Best = tuple[float, float, float, int, int]
# (-gain, variance change, cost, sequence, source, unit, destination, made at); unit -1:
# a bound, not yet scored.
_Entry = tuple[float, float, float, int, int, int, int, int]

# Destinations a unit that can only tie with the best move found tries.
_TIE_TRIES = 4


class Frontier:
    """The best move now, kept up to date over the moves made on ``st``."""

    def __init__(self, st: State, tol: float) -> None:
        self.st = st
        self.tol = tol
        self.heap: list[_Entry] = []
        self.seq = 0
        st.touched.clear()
        for p in range(len(st.procs)):
            self._bound(p)

    def _bound(self, p: int) -> None:
        key = self.st.skey[p]
        if key is not None and 2.0 * key > self.tol:
            self.seq += 1
            heapq.heappush(self.heap, (-2.0 * key, -INF, 0.0, self.seq, p, -1, -1, self.st.clock))

    def best(self, cost_left: float) -> Best | None:
        """The best single move now, or None if no move gains more than ``tol``."""
        st, heap, tol = self.st, self.heap, self.tol
        for p in {j for _i, j in st.touched}:
            self._bound(p)  # it took a unit: it may give more now
        st.touched.clear()
        gave, took = st.gave, st.took
        while heap:
            neg, dvar, cost, _seq, p, k, dst, at = heap[0]
            if k >= 0 and cost <= cost_left and max(gave[p], took[p], gave[dst], took[dst]) <= at:
                return (-neg, dvar, cost, k, dst)  # left in the heap: the move makes it stale
            heapq.heappop(heap)
            if took[p] > at:
                continue  # p took a unit since: its fresh bound is in the heap
            found = score_source(st, p, tol, cost_left)
            if found is not None:
                self.seq += 1
                g, dv, c, k, dst = found
                heapq.heappush(heap, (-g, dv, c, self.seq, p, k, dst, st.clock))
        return None


def score_source(st: State, i: int, tol: float, cost_left: float) -> Best | None:
    """The best move from processor i now, of those gaining more than ``tol``."""
    d = st.dom[i]
    dmax = -st.order[d][0][0]
    lst = st.on[i]
    if dmax <= tol or not lst or st.exc[i] <= 0.0:
        return None
    e = st.exc[i]
    best: Best | None = None
    best_gain = tol
    # Candidates fan out from the load that gains most against the top destination,
    # (e + dmax) / 2; on each side the best possible gain only falls, so each side
    # stops as soon as it cannot beat (or tie) what is found.
    centre = (e + dmax) / 2.0
    pos = bisect_left(lst, (centre, -1))
    left, right, n = pos - 1, pos, len(lst)
    while left >= 0 or right < n:
        take_right = right < n and (left < 0 or lst[right][0] - centre <= centre - lst[left][0])
        if take_right:
            w, k = lst[right]
            right += 1
            bound = 2.0 * min(e + dmax - w, e, dmax)
        else:
            w, k = lst[left]
            left -= 1
            bound = 2.0 * min(w, e, dmax)
        if bound <= best_gain and (best is None or bound < best_gain - tol):
            # This side cannot do better further out.
            if take_right:
                right = n
            else:
                left = -1
            continue
        found = _place_unit(st, k, i, d, best, best_gain, bound, tol, cost_left)
        if found is not None:
            best = found
            best_gain = max(best_gain, found[0])
    return best


def _place_unit(
    st: State,
    k: int,
    i: int,
    d: int,
    best: Best | None,
    best_gain: float,
    bound: float,
    tol: float,
    cost_left: float,
) -> Best | None:
    """Unit k's best destination, if that move beats ``best``; marks it blocked if none
    under target can take it."""
    u = st.units[k]
    freed = st.freed[d]
    if u.cost > cost_left or st.blocked.get(k) == freed:
        return None
    w, e = u.load, st.exc[i]
    # A unit that can at best tie with the move found only competes on the tie-break:
    # it tries a few destinations, not every infeasible one (on 2,000 hosts, memory,
    # GPUs and replicas made the full scans 1,300 feasibility checks per move).
    tries = _TIE_TRIES if best is not None and bound <= best_gain + tol else -1
    dl = st.destinations(k, d)
    for neg_d, j in dl:
        if neg_d >= -tol:
            break  # the rest are not under their targets
        dd = -neg_d
        g = 2.0 * min(w, e, dd, e + dd - w)  # single_move_gain, inlined
        if g < best_gain - tol or tries == 0:
            return None  # deficits only fall further down the list
        tries -= 1
        if j == i or not st.feasible(k, j):
            continue
        dst = _best_fit(st, dl, k, i, j) if w <= e and w <= dd else j
        dvar = 2.0 * w * (st.load[dst] - st.load[i] + w)
        if best is None:
            return (g, dvar, u.cost, k, dst) if g > best_gain else None
        if g > best[0] + tol or (g >= best[0] - tol and (dvar, u.cost) < (best[1], best[2])):
            return (g, dvar, u.cost, k, dst)
        return None  # the first feasible destination is this unit's best
    st.blocked[k] = freed
    return None


def _best_fit(st: State, dl: list[tuple[float, int]], k: int, i: int, j: int) -> int:
    """Of the destinations with room for all of unit k (all gain the same), the one it
    fills best, keeping large deficits for large units; ``j`` if none is feasible.

    On 500 hosts this ends at beta 0.009-0.011 where the largest deficit ended at
    0.013-0.015. (Read by index: a slice would copy the list at every try.)
    """
    b = bisect_left(dl, (-st.units[k].load, len(st.procs))) - 1
    while b >= 0:
        jb = dl[b][1]
        if jb != i and st.feasible(k, jb):
            return jb
        b -= 1
    return j
