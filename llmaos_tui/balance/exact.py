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
    n = len(st.procs)
    base = list(st.load)
    for k in movable:
        base[st.where[k]] -= st.units[k].load
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
    best_dev = incumbent[0] * st.total + 1e-12 * st.total
    best_assign: list[int] | None = None
    home = [st.where[k] for k in movable]
    # Units still to decide sit at home: `load` holds base + decided + undecided at home.
    load = [base[i] + 0.0 for i in range(n)]
    for k in movable:
        load[st.where[k]] += st.units[k].load
    fixed = list(base)  # base + decided units, where they were decided to go
    assign = list(home)
    nodes = 0
    tol = 1e-12 * st.total
    domain_members = [st.members[st.dom[home[t]]] for t in range(len(movable))]
    # Loads of the units by the search's order (decreasing), and their prefix sums: the
    # m largest undecided units are the next m.
    pre = [0.0]
    for k in movable:
        pre.append(pre[-1] + st.units[k].load)
    weights = [st.units[k].load for k in movable]
    unit_dom = [st.dom[st.where[k]] for k in movable]

    def lower_bound(t: int, left: int) -> float:
        # Two valid bounds on the final excess sum E (D = 2E in every domain):
        # - undecided units may still go anywhere, but whole: on top of the decided
        #   load, each adds at least its excess on the least loaded processor of its
        #   domain (stacking units costs no less: the excess is convex in the load;
        #   see planner.floor), E >= sum (fixed_i - T_i)^+ + sum of those increments;
        # - at most `left` of them move, and they carry at most the `left` largest
        #   undecided loads; what does not move stays in `load`, and a processor's
        #   excess falls by no more than what leaves it: E >= E(load) - top_left.
        decided = 0.0
        now = 0.0
        for i in range(n):
            decided += max(0.0, fixed[i] - st.target[i])
            now += max(0.0, load[i] - st.target[i])
        for d, mem in enumerate(st.members):
            slack = min(fixed[i] - st.target[i] for i in mem)
            base_excess = max(0.0, slack)
            for u in range(t, len(movable)):
                if unit_dom[u] == d:
                    decided += max(0.0, slack + weights[u]) - base_excess
        moving = pre[min(len(movable), t + left)] - pre[t]
        return 2.0 * max(decided, now - moving)

    def feasible_final() -> bool:
        return _final_ok(st, movable, home, assign, load)

    def dfs(t: int, left: int) -> None:
        nonlocal best_dev, best_assign, nodes
        nodes += 1
        if nodes > node_limit:
            raise _Limit
        if t == len(movable) or left == 0:
            dev = sum(abs(load[i] - st.target[i]) for i in range(n))
            if dev < best_dev - tol and feasible_final():
                best_dev, best_assign = dev, list(assign)
            return
        if lower_bound(t, left) >= best_dev - tol:
            return
        k = movable[t]
        w = st.units[k].load
        h = home[t]
        # Stay first: plans with fewer moves are found before those with more.
        fixed[h] += w
        dfs(t + 1, left)
        fixed[h] -= w
        load[h] -= w
        seen: set[tuple[float, float, float]] = set()
        # Largest deficit first: good assignments are found early and prune the rest.
        for j in sorted(domain_members[t], key=lambda j: load[j] - st.target[j]):
            if j == h:
                continue
            # Twins (same load and target, no units of their own that may still move,
            # no limits) are interchangeable: trying one of them is enough.
            twin = not st.on[j] and not _distinct(st, j)
            key = (load[j], st.target[j], st.limit[j])
            if twin and key in seen:
                continue
            if twin:
                seen.add(key)
            assign[t] = j
            load[j] += w
            fixed[j] += w
            dfs(t + 1, left - 1)
            fixed[j] -= w
            load[j] -= w
        assign[t] = h
        load[h] += w

    try:
        dfs(0, budget)
    except _Limit:
        if not anytime:
            raise RuntimeError(f"exact search passed {node_limit} nodes") from None
    if best_assign is None:
        return Optimum(incumbent[0], incumbent[1], nodes)
    moves = tuple(
        (st.units[k].id, st.procs[best_assign[t]].id)
        for t, k in enumerate(movable)
        if best_assign[t] != home[t]
    )
    return Optimum(best_dev / st.total, moves, nodes)


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
    groups: dict[tuple[str, int], int] = {}
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
    if constraints.anti_affinity:
        place = {k: assign[t] for t, k in enumerate(movable)}
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
    units of two processors anew between them (all splits of up to ``_PAIR_UNITS``). Only end states
    that keep every constraint count (see :func:`solve` for why an order then exists).
    Deterministic; stops at a local optimum or after ``max_rounds`` rounds. The
    result's ``nodes`` is the number of rounds.
    """
    constraints = constraints or Constraints()
    st = State.build(processors, units, constraints)
    movable = sorted(k for lst in st.on for _w, k in lst)
    index = {p.id: i for i, p in enumerate(st.procs)}
    home = [st.where[k] for k in movable]
    start = start or {}
    assign = [index.get(start.get(st.units[k].id, ""), home[t]) for t, k in enumerate(movable)]
    load = list(st.load)
    for t, k in enumerate(movable):
        load[home[t]] -= st.units[k].load
        load[assign[t]] += st.units[k].load
    target = st.target
    w = [st.units[k].load for k in movable]
    members = [st.members[st.dom[h]] for h in home]
    tol = 1e-12 * max(1.0, st.total)

    # Where limits bind, an end state that keeps them may still have no order of its
    # moves that keeps them all the way (two full hosts swapping units): such states are
    # refused, as the planner could not carry them out.
    limited = bool(
        constraints.forbidden
        or any(x < math.inf for x in (*st.limit, *st.mem, *st.gpus))
        or (constraints.anti_affinity and any(u.group is not None for u in st.units))
    )

    def moves_of() -> tuple[tuple[str, str], ...]:
        return tuple(
            (st.units[k].id, st.procs[assign[t]].id)
            for t, k in enumerate(movable)
            if assign[t] != home[t]
        )

    def dev() -> float:
        return sum(abs(load[i] - target[i]) for i in range(len(load)))

    def settle(new: dict[int, int]) -> bool:
        """Make the reassignment if the end state keeps the constraints, else leave it."""
        old = {t: assign[t] for t in new}
        for t, j in new.items():
            load[assign[t]] -= w[t]
            load[j] += w[t]
            assign[t] = j
        if _final_ok(st, movable, home, assign, load) and (
            not limited or ordered(processors, units, constraints, dict(moves_of()), "") is not None
        ):
            return True
        for t, j in old.items():
            load[assign[t]] -= w[t]
            load[j] += w[t]
            assign[t] = j
        return False

    # Best split per pair, kept across rounds: a round changes a few processors only.
    splits: dict[tuple[int, ...], tuple[float, int]] = {}
    rounds = 0
    while rounds < max_rounds:
        rounds += 1
        count = sum(1 for t in range(len(movable)) if assign[t] != home[t])
        cands: list[tuple[float, int, dict[int, int]]] = []
        dv = [load[i] - target[i] for i in range(len(load))]
        for t in range(len(movable)):
            a = assign[t]
            leave = abs(dv[a] - w[t]) - abs(dv[a])
            for j in members[t]:
                if j == a:
                    continue
                if count - (a != home[t]) + (j != home[t]) > max_moves:
                    continue
                g = leave + abs(dv[j] + w[t]) - abs(dv[j])
                if g < -tol:
                    cands.append((g, len(cands), {t: j}))
            for t2 in range(t + 1, len(movable)):
                a, b = assign[t], assign[t2]
                if a == b or st.dom[a] != st.dom[b]:
                    continue
                after = count - (a != home[t]) - (b != home[t2]) + (b != home[t]) + (a != home[t2])
                if after > max_moves:
                    continue
                x = w[t2] - w[t]
                g = abs(dv[a] + x) - abs(dv[a]) + abs(dv[b] - x) - abs(dv[b])
                if g < -tol:
                    cands.append((g, len(cands), {t: b, t2: a}))
        if count >= max_moves:
            # Budget spent: bring one moved unit home and move another instead.
            for t in range(len(movable)):
                if assign[t] == home[t]:
                    continue
                for t2 in range(len(movable)):
                    if assign[t2] != home[t2] or t2 == t:
                        continue
                    shift = {assign[t]: -w[t]}
                    shift[home[t]] = shift.get(home[t], 0.0) + w[t]
                    shift[home[t2]] = shift.get(home[t2], 0.0) - w[t2]
                    base = sum(abs(dv[i] + x) - abs(dv[i]) for i, x in shift.items())
                    for j in members[t2]:
                        if j == home[t2]:
                            continue
                        x = shift.get(j, 0.0)
                        g = base + abs(dv[j] + x + w[t2]) - abs(dv[j] + x)
                        if g < -tol:
                            cands.append((g, len(cands), {t: home[t], t2: j}))
        cands.extend(
            _pair_moves(st, home, assign, w, load, count, max_moves, tol, len(cands), splits)
        )
        cands.sort(key=lambda c: (c[0], c[1]))
        if not any(settle(new) for _g, _n, new in cands):
            break
    return Optimum(dev() / st.total if st.total > 0 else 0.0, moves_of(), rounds)


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
