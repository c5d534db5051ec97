"""An exact solver for small balancing instances: the yardstick the greedy is tested against.

Branch and bound over final assignments: a plan of at most k moves, each unit moved
at most once, ends in an assignment that differs from today's in at most k units,
and any such assignment whose receiving processors respect the constraints is what
some ordering of those moves reaches (moves out only lower a processor's load,
memory and GPU use). So the optimum over assignments within Hamming distance k is
the optimum over plans of k moves, which is what the greedy's result is compared to.

Pure Python, exponential: meant for a handful of processors and about a dozen
movable units (the tests); the benchmark uses CP-SAT for larger small instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmaos_tui.balance.model import Budget, Constraints, Processor, Unit
from llmaos_tui.balance.planner import _State, plan


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
    st = _State.build(processors, units, constraints)
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
        greedy = plan(
            processors,
            units,
            budget=Budget(max_moves=budget, min_gain=0.0),
            constraints=constraints,
            refine=False,
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

    def lower_bound() -> float:
        # Undecided units may still move anywhere, as a fluid: only what is decided counts.
        return 2.0 * sum(max(0.0, fixed[i] - st.target[i]) for i in range(n))

    def feasible_final() -> bool:
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
                if (
                    assign[t] != home[t]
                    and u.group is not None
                    and groups[(u.group, assign[t])] > 1
                ):
                    return False
        return True

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
        if lower_bound() >= best_dev - tol:
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
        for j in domain_members[t]:
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


class _Limit(Exception):
    """The node limit was reached (unwinds the recursion)."""


def _distinct(st: _State, j: int) -> bool:
    """Whether processor j has limits of its own (so symmetry with a twin does not hold)."""
    p = st.procs[j]
    return (
        p.mem_free is not None
        or p.gpus_free is not None
        or any(st.where[k] == j and u.group is not None for k, u in enumerate(st.units))
    )
