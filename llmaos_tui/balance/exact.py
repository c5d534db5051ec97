"""Exact and local search over end states of small balancing instances.

What the planner refines small plans with, and the yardstick the tests hold it to.

Branch and bound over final assignments (:func:`solve`): a plan of at most k moves,
each unit moved at most once, ends in an assignment that differs from today's in at
most k units, and keeps every constraint on the processors that receive units. So
the optimum over such assignments is at most the optimum over plans of k moves: a
valid yardstick. Where no limit binds (no capacity, memory, GPU, anti-affinity or
forbidden pair) every order of the moves is feasible and the two optima are equal;
where limits bind, an assignment may need an order that does not exist (two full
hosts swapping units), and the planner then keeps its own plan.

:func:`improve` is a local search over the same end states (one unit elsewhere, two
swapped, one moved unit traded for another, or the units of two processors split
anew between them); it runs first, so the exact search starts from a good incumbent.

Pure Python, exponential: meant for a handful of processors and a few dozen
movable units; the benchmark uses CP-SAT for its yardstick.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from llmaos_tui.balance.greedy import greedy_plan
from llmaos_tui.balance.model import Budget, Constraints, Processor, Unit
from llmaos_tui.balance.state import State, ordered


@dataclass(frozen=True)
class Optimum:
    """The best beta reachable in at most ``max_moves`` moves, and one assignment reaching it."""

    beta: float
    moves: tuple[tuple[str, str], ...]  # (unit id, destination processor id)
    nodes: int


def solve(
    processors: Sequence[Processor],
    units: Sequence[Unit],
    max_moves: int | None = None,
    constraints: Constraints | None = None,
    node_limit: int = 2_000_000,
    incumbent: tuple[float, tuple[tuple[str, str], ...]] | None = None,
) -> Optimum:
    """The exact optimum within ``node_limit`` search nodes.

    Without ``incumbent`` the greedy's plan is the starting point and passing the
    limit raises RuntimeError. With one (beta, moves), the search only looks for
    better and, at the limit, returns the best found so far (anytime use by the
    planner): then the result is not proven optimal.
    """
    constraints = constraints or Constraints()
    st = State.build(processors, units, constraints)
    if st.total <= 0.0:
        return Optimum(0.0, (), 0)
    movable = sorted((k for lst in st.on for _w, k in lst), key=lambda k: -st.units[k].load)
    budget = len(movable) if max_moves is None else min(max_moves, len(movable))
    anytime = incumbent is not None
    if incumbent is None:
        # The greedy's plan is a feasible incumbent: the search only has to beat it.
        greedy = greedy_plan(
            processors,
            units,
            budget=Budget(max_moves=budget, min_gain=0.0),
            constraints=constraints,
        )
        incumbent = (greedy.beta_after_predicted, tuple((m.unit, m.dst) for m in greedy.moves))
    search = _Search(st, movable, incumbent[0] * st.total + 1e-12 * st.total, node_limit)
    try:
        search.dfs(0, budget)
    except _Limit:
        if not anytime:
            raise RuntimeError(f"exact search passed {node_limit} nodes") from None
    if search.best_assign is None:
        return Optimum(incumbent[0], incumbent[1], search.nodes)
    moves = tuple(
        (st.units[k].id, st.procs[search.best_assign[t]].id)
        for t, k in enumerate(movable)
        if search.best_assign[t] != search.home[t]
    )
    return Optimum(search.best_dev / st.total, moves, search.nodes)


class _Search:
    """The branch and bound of :func:`solve`: units decided one at a time, largest
    first, each staying home or going to a processor of its domain."""

    def __init__(self, st: State, movable: list[int], best_dev: float, node_limit: int) -> None:
        self.st = st
        self.movable = movable
        self.n = len(st.procs)
        self.best_dev = best_dev
        self.best_assign: list[int] | None = None
        self.node_limit = node_limit
        self.nodes = 0
        self.tol = 1e-12 * st.total
        self.home = [st.where[k] for k in movable]
        self.weights = [st.units[k].load for k in movable]
        base = list(st.load)
        for h, w in zip(self.home, self.weights, strict=True):
            base[h] -= w
        # Units still to decide sit at home: `load` holds base + decided + undecided at
        # home; `fixed` base + decided units, where they were decided to go.
        self.load = list(st.load)
        self.fixed = base
        self.assign = list(self.home)
        self.domain_members = [st.members[st.dom[h]] for h in self.home]
        self.unit_dom = [st.dom[h] for h in self.home]
        # Loads of the units by the search's order (decreasing), and their prefix sums:
        # the m largest undecided units are the next m.
        self.pre = [0.0]
        for w in self.weights:
            self.pre.append(self.pre[-1] + w)
        # Twins (same load and target, no units of their own that may still move, no
        # limits) are interchangeable: trying one of them is enough.
        self.twin = [not st.on[j] and not _distinct(st, j) for j in range(self.n)]

    def lower_bound(self, t: int, left: int) -> float:
        """Two valid bounds on the final excess sum E (D = 2E in every domain):

        - undecided units may still go anywhere, but whole: on top of the decided load,
          each adds at least its excess on the least loaded processor of its domain
          (stacking units costs no less: the excess is convex in the load; see
          planner.floor), E >= sum (fixed_i - T_i)^+ + sum of those increments;
        - at most ``left`` of them move, and they carry at most the ``left`` largest
          undecided loads; what does not move stays in ``load``, and a processor's
          excess falls by no more than what leaves it: E >= E(load) - top_left.
        """
        st, fixed, load = self.st, self.fixed, self.load
        decided = 0.0
        now = 0.0
        for i in range(self.n):
            decided += max(0.0, fixed[i] - st.target[i])
            now += max(0.0, load[i] - st.target[i])
        for d, mem in enumerate(st.members):
            slack = min(fixed[i] - st.target[i] for i in mem)
            base_excess = max(0.0, slack)
            for u in range(t, len(self.movable)):
                if self.unit_dom[u] == d:
                    decided += max(0.0, slack + self.weights[u]) - base_excess
        moving = self.pre[min(len(self.movable), t + left)] - self.pre[t]
        return 2.0 * max(decided, now - moving)

    def _leaf(self) -> None:
        st, load = self.st, self.load
        dev = sum(abs(load[i] - st.target[i]) for i in range(self.n))
        if dev < self.best_dev - self.tol and _final_ok(
            st, self.movable, self.home, self.assign, load
        ):
            self.best_dev, self.best_assign = dev, list(self.assign)

    def dfs(self, t: int, left: int) -> None:
        self.nodes += 1
        if self.nodes > self.node_limit:
            raise _Limit
        if t == len(self.movable) or left == 0:
            self._leaf()
            return
        if self.lower_bound(t, left) >= self.best_dev - self.tol:
            return
        w, h = self.weights[t], self.home[t]
        load, fixed = self.load, self.fixed
        # Stay first: plans with fewer moves are found before those with more.
        fixed[h] += w
        self.dfs(t + 1, left)
        fixed[h] -= w
        load[h] -= w
        self._branch(t, left, w, h)
        self.assign[t] = h
        load[h] += w

    def _branch(self, t: int, left: int, w: float, h: int) -> None:
        """Unit t (taken off its home h) sent to each other processor of its domain."""
        st, load, fixed = self.st, self.load, self.fixed
        seen: set[tuple[float, float, float]] = set()
        # Largest deficit first: good assignments are found early and prune the rest.
        for j in sorted(self.domain_members[t], key=lambda j: load[j] - st.target[j]):
            if j == h:
                continue
            key = (load[j], st.target[j], st.limit[j])
            if self.twin[j]:
                if key in seen:
                    continue
                seen.add(key)
            self.assign[t] = j
            load[j] += w
            fixed[j] += w
            self.dfs(t + 1, left - 1)
            fixed[j] -= w
            load[j] -= w


def _final_ok(
    st: State, movable: list[int], home: list[int], assign: list[int], load: list[float]
) -> bool:
    """Whether the end state ``assign`` (loads ``load``) keeps every constraint on the
    processors that receive units (those that only give up units can only gain room)."""
    constraints = st.constraints
    n = len(st.procs)
    mem = list(st.mem)
    gpus = list(st.gpus)
    received = [False] * n
    for t, k in enumerate(movable):
        u = st.units[k]
        if assign[t] != home[t]:
            if (u.id, st.procs[assign[t]].id) in constraints.forbidden:
                return False
            received[assign[t]] = True
            mem[home[t]] += u.mem
            mem[assign[t]] -= u.mem
            gpus[home[t]] += u.gpus
            gpus[assign[t]] -= u.gpus
    for i in range(n):
        if received[i] and (load[i] > st.limit[i] * (1 + 1e-12) or mem[i] < 0 or gpus[i] < 0):
            return False
    return not constraints.anti_affinity or _groups_ok(st, movable, home, assign)


def _groups_ok(st: State, movable: list[int], home: list[int], assign: list[int]) -> bool:
    """Whether no moved unit ends beside another of its replica group."""
    place = {k: assign[t] for t, k in enumerate(movable)}
    groups: dict[tuple[str, int], int] = {}
    for k, u in enumerate(st.units):
        if u.group is not None:
            key = (u.group, place.get(k, st.where[k]))
            groups[key] = groups.get(key, 0) + 1
    for t, k in enumerate(movable):
        u = st.units[k]
        if assign[t] != home[t] and u.group is not None and groups[(u.group, assign[t])] > 1:
            return False
    return True


def refine(
    processors: Sequence[Processor],
    units: Sequence[Unit],
    moves: Sequence[tuple[str, str]],
    constraints: Constraints | None = None,
    min_gain: float | None = 0.0,
) -> Optimum:
    """The best end state of at most ``len(moves)`` moves found by local search from
    the greedy's plan ``moves`` and from the greedy's plans with one of its choices
    taken away (the unit sent elsewhere, or kept home), one choice at a time.

    A local search from one start stops at the first local optimum; on a few cores
    the greedy's first choices (which large unit goes where) decide which one, and
    the best end state often pairs them differently (a limited-discrepancy search
    over those choices). Deterministic; about 2 x len(moves) greedy runs and local
    searches. ``min_gain`` is the greedy's (None: derived from the instance).
    """
    constraints = constraints or Constraints()
    k = len(moves)
    best = improve(processors, units, k, constraints, dict(moves))
    total = sum(p.load for p in processors)
    tol = 1e-12 * max(1.0, total)
    for unit, dst in moves:
        for variant in (
            replace(constraints, forbidden=constraints.forbidden | {(unit, dst)}),
            replace(constraints, frozen=constraints.frozen | {unit}),
        ):
            alt = greedy_plan(
                processors,
                units,
                budget=Budget(max_moves=k, min_gain=min_gain),
                constraints=variant,
            )
            if not alt.moves:
                continue
            got = improve(processors, units, k, constraints, {m.unit: m.dst for m in alt.moves})
            if got.beta < best.beta - tol:
                best = got
    return best


def improve(
    processors: Sequence[Processor],
    units: Sequence[Unit],
    max_moves: int,
    constraints: Constraints | None = None,
    start: Mapping[str, str] | None = None,
    max_rounds: int = 200,
) -> Optimum:
    """Local search over end states of at most ``max_moves`` moves, from ``start``.

    ``start`` maps unit ids to the processor they end on (a plan's moves; others stay).
    Each round takes the best of: send one unit elsewhere (back home included), swap
    where two units end, bring one moved unit home and move another instead (so a
    plan with all its moves spent can still change which units move), or split the
    units of two processors anew between them (all splits of up to ``_PAIR_UNITS``).
    Only end states that keep every constraint count (see :func:`solve` for why an
    order then exists). Deterministic; stops at a local optimum or after
    ``max_rounds`` rounds. The result's ``nodes`` is the number of rounds.
    """
    constraints = constraints or Constraints()
    ls = _Local(processors, units, max_moves, constraints, start or {})
    rounds = 0
    while rounds < max_rounds:
        rounds += 1
        if not ls.step():
            break
    st = ls.st
    return Optimum(ls.dev() / st.total if st.total > 0 else 0.0, ls.moves_of(), rounds)


# A candidate of the local search: (change of D, order found, reassignment t -> processor).
_Cand = tuple[float, int, dict[int, int]]


class _Local:
    """The state of :func:`improve`: where each movable unit ends, and the loads."""

    def __init__(
        self,
        processors: Sequence[Processor],
        units: Sequence[Unit],
        max_moves: int,
        constraints: Constraints,
        start: Mapping[str, str],
    ) -> None:
        self.processors, self.units = processors, units
        self.max_moves = max_moves
        self.constraints = constraints
        st = self.st = State.build(processors, units, constraints)
        self.movable = sorted(k for lst in st.on for _w, k in lst)
        index = {p.id: i for i, p in enumerate(st.procs)}
        self.home = [st.where[k] for k in self.movable]
        self.assign = [
            index.get(start.get(st.units[k].id, ""), self.home[t])
            for t, k in enumerate(self.movable)
        ]
        self.w = [st.units[k].load for k in self.movable]
        self.load = list(st.load)
        for t in range(len(self.movable)):
            self.load[self.home[t]] -= self.w[t]
            self.load[self.assign[t]] += self.w[t]
        self.members = [st.members[st.dom[h]] for h in self.home]
        self.tol = 1e-12 * max(1.0, st.total)
        # Where limits bind, an end state that keeps them may still have no order of
        # its moves that keeps them all the way (two full hosts swapping units): such
        # states are refused, as the planner could not carry them out.
        self.limited = bool(
            constraints.forbidden
            or any(x < math.inf for x in (*st.limit, *st.mem, *st.gpus))
            or (constraints.anti_affinity and any(u.group is not None for u in st.units))
        )
        # Best split per pair, kept across rounds: a round changes a few processors only.
        self.splits: dict[tuple[int, ...], tuple[float, int]] = {}

    def moves_of(self) -> tuple[tuple[str, str], ...]:
        st = self.st
        return tuple(
            (st.units[k].id, st.procs[self.assign[t]].id)
            for t, k in enumerate(self.movable)
            if self.assign[t] != self.home[t]
        )

    def dev(self) -> float:
        return sum(abs(x - t) for x, t in zip(self.load, self.st.target, strict=True))

    def _reassign(self, new: Mapping[int, int]) -> None:
        for t, j in new.items():
            self.load[self.assign[t]] -= self.w[t]
            self.load[j] += self.w[t]
            self.assign[t] = j

    def settle(self, new: dict[int, int]) -> bool:
        """Make the reassignment if the end state keeps the constraints, else leave it."""
        old = {t: self.assign[t] for t in new}
        self._reassign(new)
        if _final_ok(self.st, self.movable, self.home, self.assign, self.load) and (
            not self.limited
            or ordered(self.processors, self.units, self.constraints, dict(self.moves_of()), "")
            is not None
        ):
            return True
        self._reassign(old)
        return False

    def step(self) -> bool:
        """One round: the candidates by gain, the first that keeps the constraints made."""
        count = sum(1 for t in range(len(self.movable)) if self.assign[t] != self.home[t])
        dv = [x - t for x, t in zip(self.load, self.st.target, strict=True)]
        cands = self._singles_and_swaps(count, dv)
        if count >= self.max_moves:
            cands.extend(self._trades(dv, len(cands)))
        cands.extend(
            _pair_moves(
                self.st,
                self.home,
                self.assign,
                self.w,
                self.load,
                count,
                self.max_moves,
                self.tol,
                len(cands),
                self.splits,
            )
        )
        cands.sort(key=lambda c: (c[0], c[1]))
        return any(self.settle(new) for _g, _n, new in cands)

    def _singles_and_swaps(self, count: int, dv: list[float]) -> list[_Cand]:
        """One unit elsewhere (home included), and two units swapped."""
        cands: list[_Cand] = []
        assign, home, w, tol = self.assign, self.home, self.w, self.tol
        for t in range(len(self.movable)):
            a = assign[t]
            leave = abs(dv[a] - w[t]) - abs(dv[a])
            for j in self.members[t]:
                if j == a or count - (a != home[t]) + (j != home[t]) > self.max_moves:
                    continue
                g = leave + abs(dv[j] + w[t]) - abs(dv[j])
                if g < -tol:
                    cands.append((g, len(cands), {t: j}))
            for t2 in range(t + 1, len(self.movable)):
                found = self._swap(t, t2, count, dv)
                if found is not None:
                    cands.append((found[0], len(cands), found[1]))
        return cands

    def _swap(
        self, t: int, t2: int, count: int, dv: list[float]
    ) -> tuple[float, dict[int, int]] | None:
        a, b = self.assign[t], self.assign[t2]
        if a == b or self.st.dom[a] != self.st.dom[b]:
            return None
        home = self.home
        after = count - (a != home[t]) - (b != home[t2]) + (b != home[t]) + (a != home[t2])
        if after > self.max_moves:
            return None
        x = self.w[t2] - self.w[t]
        g = abs(dv[a] + x) - abs(dv[a]) + abs(dv[b] - x) - abs(dv[b])
        return (g, {t: b, t2: a}) if g < -self.tol else None

    def _trades(self, dv: list[float], seq: int) -> list[_Cand]:
        """Budget spent: bring one moved unit home and move another instead."""
        cands: list[_Cand] = []
        assign, home, w = self.assign, self.home, self.w
        moved = [t for t in range(len(self.movable)) if assign[t] != home[t]]
        still = [t for t in range(len(self.movable)) if assign[t] == home[t]]
        for t in moved:
            for t2 in still:
                shift = {assign[t]: -w[t]}
                shift[home[t]] = shift.get(home[t], 0.0) + w[t]
                shift[home[t2]] = shift.get(home[t2], 0.0) - w[t2]
                base = sum(abs(dv[i] + x) - abs(dv[i]) for i, x in shift.items())
                for j in self.members[t2]:
                    if j == home[t2]:
                        continue
                    x = shift.get(j, 0.0)
                    g = base + abs(dv[j] + x + w[t2]) - abs(dv[j] + x)
                    if g < -self.tol:
                        cands.append((g, seq + len(cands), {t: home[t], t2: j}))
        return cands


# A pair of processors is re-split only if it holds at most this many movable units
# (the work is 2 ** that).
_PAIR_UNITS = 12


def _pair_moves(
    st: State,
    home: list[int],
    assign: list[int],
    w: list[float],
    load: list[float],
    count: int,
    max_moves: int,
    tol: float,
    seq: int,
    splits: dict[tuple[int, ...], tuple[float, int]],
) -> list[tuple[float, int, dict[int, int]]]:
    """For each pair of processors of a domain: the best split of the movable units on
    them between the two (all splits tried), as (change of D, order, reassignment).

    Units on a few processors behave like a partition problem, where moving one unit
    at a time gets stuck: re-splitting two processors at once gets out.
    """
    out: list[tuple[float, int, dict[int, int]]] = []
    target = st.target
    for mem in st.members:
        for x, i in enumerate(mem):
            for j in mem[x + 1 :]:
                dev_i, dev_j = load[i] - target[i], load[j] - target[j]
                # A split keeps the pair's load: |dev_i| + |dev_j| >= |dev_i + dev_j|
                # after it, so two processors on one side of their targets gain nothing.
                if abs(dev_i) + abs(dev_j) - abs(dev_i + dev_j) <= tol:
                    continue
                ts = [t for t in range(len(assign)) if assign[t] in (i, j)]
                m = len(ts)
                if m < 2 or m > _PAIR_UNITS:
                    continue
                room = max_moves - count + sum(1 for t in ts if assign[t] != home[t])
                key = (i, j, room, *ts, *(assign[t] == i for t in ts))
                if key not in splits:
                    splits[key] = _best_split(st, home, assign, w, load, ts, i, j, room, tol)
                best = splits[key]
                if best[0] < -tol:
                    new = {t: (i if best[1] >> b & 1 else j) for b, t in enumerate(ts)}
                    out.append(
                        (best[0], seq + len(out), {t: d for t, d in new.items() if d != assign[t]})
                    )
    return out


def _best_split(
    st: State,
    home: list[int],
    assign: list[int],
    w: list[float],
    load: list[float],
    ts: list[int],
    i: int,
    j: int,
    room: int,
    tol: float,
) -> tuple[float, int]:
    """The best split of units ``ts`` between processors i and j with at most ``room``
    moves among them: (change of D, bit mask of the units that end on i)."""
    target = st.target
    m = len(ts)
    on_i = sum(w[t] for t in ts if assign[t] == i)
    rest_i = load[i] - on_i
    pair = load[i] + load[j]
    # Per split (bit set: the unit ends on i): load brought to i, moves made.
    sums = [0.0] * (1 << m)
    moves = [0] * (1 << m)
    base_moves = sum(1 for t in ts if home[t] != j)  # all on j
    moves[0] = base_moves
    for b, t in enumerate(ts):
        step = 1 << b
        d_moves = (home[t] != i) - (home[t] != j)
        for mask in range(step):
            sums[mask | step] = sums[mask] + w[t]
            moves[mask | step] = moves[mask] + d_moves
    now = abs(load[i] - target[i]) + abs(load[j] - target[j])
    best = (-tol, 0)
    for mask in range(1 << m):
        if moves[mask] > room:
            continue
        li = rest_i + sums[mask]
        g = abs(li - target[i]) + abs(pair - li - target[j]) - now
        if g < best[0]:
            best = (g, mask)
    return best


class _Limit(Exception):
    """The node limit was reached (unwinds the recursion)."""


def _distinct(st: State, j: int) -> bool:
    """Whether processor j has limits of its own (so symmetry with a twin does not hold)."""
    p = st.procs[j]
    return (
        p.mem_free is not None
        or p.gpus_free is not None
        or any(st.where[k] == j and u.group is not None for k, u in enumerate(st.units))
    )
