"""The planner's index-based working state, shared by the greedy and the exact search.

:class:`State` holds one level's processors and units as lists (faster than dicts
in the inner loops), their loads, targets and limits, and keeps sorted what the
greedy reads at every step: per domain the processors by excess (the largest
deficits and excesses without re-sorting) and the processors that can still give
a unit, by how much one move from them can gain at most. :func:`ordered` turns an
end state into moves feasible in order; :func:`make_move` makes one move and
describes it. Its own module so that :mod:`.greedy`, :mod:`.exact` and
:mod:`.planner` import it and not each other's internals. Pure: no I/O.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from llmaos_tui.balance.model import Constraints, Move, Problem, Processor, Unit

INF = math.inf
_T = TypeVar("_T")
# Memory cuts per tier chain (each tier is kept sorted at every move).
_MEM_TIERS = 1


@dataclass
class State:
    """Index-based working state of one plan."""

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
    # ... and the sum of their loads (what a processor keeps is load - on_load).
    on_load: list[float] = field(default_factory=list)
    occupied: set[tuple[str, int]] = field(default_factory=set)
    # load - target per processor, and per domain the pairs (exc, index) kept sorted
    # as moves are made: the largest deficits and excesses without re-sorting.
    exc: list[float] = field(default_factory=list)
    order: list[list[tuple[float, int]]] = field(default_factory=list)
    # Per domain, the processors over target with a movable unit, as pairs (key,
    # index) sorted by key = min(excess, largest movable unit): one move from i
    # gains at most 2 * min(key_i, largest deficit), so the greedy reads sources
    # from the top and stops at the first that cannot beat what it has (on 4,096
    # cores most cores over target hold only pinned work or small units).
    srcs: list[list[tuple[float, int]]] = field(default_factory=list)
    # Tiers: the same pairs as ``order`` for the processors with at least
    # ``tier_keys[t] = (gpus, memory)`` free, per domain; a unit reads the narrowest
    # tier that its needs admit (``tier_of``, by (needs a GPU, memory)). On 2,000
    # hosts, GPU units refused by hosts without one were 70% of the feasibility
    # checks, then GPU units refused for memory 90% of what was left. Memory cuts:
    # ``_MEM_TIERS`` quantiles of the distinct needs of the movable units.
    tier_keys: list[tuple[float, float]] = field(default_factory=list)
    tiers: list[list[list[tuple[float, int]]]] = field(default_factory=list)
    tier_of: dict[tuple[bool, float], int] = field(default_factory=dict)
    # Units that no processor under target could take, with the domain's count of
    # processors freed below target when that was found: while the count stands, no
    # destination has opened for them (only a move's source gains room), and the
    # greedy does not scan for them again.
    blocked: dict[int, int] = field(default_factory=dict)
    freed: list[int] = field(default_factory=list)
    skey: list[float | None] = field(default_factory=list)
    # Moves made so far (trials and their reverts included); per processor, the move
    # that last took a unit from it and the one that last brought it one; and the
    # (source, destination) pairs of the moves the greedy's frontier (:mod:`.frontier`)
    # has not read yet: it re-scores only what they touched.
    clock: int = 0
    gave: list[int] = field(default_factory=list)
    took: list[int] = field(default_factory=list)
    touched: list[tuple[int, int]] = field(default_factory=list)
    total: float = 0.0
    dev: float = 0.0

    @classmethod
    def build(
        cls, processors: Sequence[Processor], units: Sequence[Unit], constraints: Constraints
    ) -> State:
        st = cls(list(processors), list(units), constraints)
        index = {p.id: i for i, p in enumerate(st.procs)}
        if (
            len(index) != len(st.procs)
            or len({u.id for u in st.units}) != len(st.units)
            or any(u.processor not in index for u in st.units)
        ):
            Problem(processors, units)  # raises, naming the duplicate or unknown id
        st._place(index)
        st._aim()
        st._index_units(index)
        st._sort()
        return st

    def _place(self, index: dict[str, int]) -> None:
        """Domains, loads and limits of the processors."""
        c = self.constraints
        doms: dict[str, int] = {}
        unit_sum = [0.0] * len(self.procs)
        for u in self.units:
            unit_sum[index[u.processor]] += u.load
        for i, p in enumerate(self.procs):
            self.dom.append(doms.setdefault(p.domain, len(doms)))
            # A processor carries at least its units (queued demand may not be measured yet).
            self.load.append(max(p.load, unit_sum[i]))
            self.limit.append(p.capacity * c.headroom if c.capacity else INF)
            self.mem.append(INF if p.mem_free is None or not c.memory else p.mem_free)
            self.gpus.append(INF if p.gpus_free is None or not c.gpus else p.gpus_free)
        self.members = [[] for _ in doms]
        for i, d in enumerate(self.dom):
            self.members[d].append(i)

    def _aim(self) -> None:
        """Each processor's target: its share, by capacity, of its domain's load."""
        # Domains need not be contiguous in the processor list.
        self.target = [0.0] * len(self.procs)
        for mem in self.members:
            dl = sum(self.load[i] for i in mem)
            dc = sum(self.procs[i].capacity for i in mem)
            for i in mem:
                self.target[i] = self.procs[i].capacity * dl / dc
        self.total = sum(self.load)
        self.exc = [x - t for x, t in zip(self.load, self.target, strict=True)]
        self.dev = sum(abs(x) for x in self.exc)

    def _index_units(self, index: dict[str, int]) -> None:
        """Where each unit is, the groups on each processor, and the movable units."""
        c = self.constraints
        self.on = [[] for _ in self.procs]
        frozen = c.frozen
        for k, u in enumerate(self.units):
            i = index[u.processor]
            self.where.append(i)
            if u.group is not None and c.anti_affinity:
                self.occupied.add((u.group, i))
            if not (u.pinned or u.id in frozen) and u.load > 0.0:
                self.on[i].append((u.load, k))
        for lst in self.on:
            lst.sort()
        self.on_load = [sum(w for w, _k in lst) for lst in self.on]

    def _sort(self) -> None:
        """The sorted views the greedy reads: by excess, by tier, the sources by key."""
        exc = self.exc
        self.order = [sorted((exc[i], i) for i in mem) for mem in self.members]
        self._tier()
        self.freed = [0] * len(self.members)
        self.gave = [0] * len(self.procs)
        self.took = [0] * len(self.procs)
        self.skey = [None] * len(self.procs)
        self.srcs = [[] for _ in self.members]
        for i in range(len(self.procs)):
            self.rekey(i)

    def _tier(self) -> None:
        """The tiers, only where some unit needs them, some processor has a limit and
        the tier is narrower than the one it refines. Each is kept sorted at every move:
        on 2,000 hosts, once the frontier stopped rescanning, a tier per memory need
        (thirteen) cost more in upkeep than it saved in refusals, and one memory cut
        (the median need) did as well as none or six."""
        gpu = any(x < INF for x in self.gpus)
        mem = any(x < INF for x in self.mem)
        if not gpu and not mem:
            return
        moving = [self.units[k] for lst in self.on for _w, k in lst]
        gpu = gpu and any(u.gpus > 0 for u in moving)
        for needs_gpu in (False, True) if gpu else (False,):
            group = [u for u in moving if (u.gpus > 0) == needs_gpu] if gpu else moving
            needs = sorted({u.mem for u in group if u.mem > 0}) if mem else []
            g = 1.0 if needs_gpu else 0.0
            kept: list[tuple[float, int]] = []  # (memory cut, tier index)
            size = len(self.procs)
            for m in ([0.0] if needs_gpu else []) + _quantiles(needs):
                tier = [
                    sorted((self.exc[i], i) for i in ms if self.gpus[i] >= g and self.mem[i] >= m)
                    for ms in self.members
                ]
                n = sum(len(t) for t in tier)
                if n < size or (needs_gpu and m == 0.0):
                    kept.append((m, len(self.tiers)))
                    self.tier_keys.append((g, m))
                    self.tiers.append(tier)
                    size = n
            for need in {u.mem for u in group} if kept else ():
                t = max(((c, x) for c, x in kept if c <= need), default=(0.0, -1))[1]
                self.tier_of[needs_gpu, need] = t

    def rekey(self, p: int) -> None:
        """Put processor p where it belongs among its domain's sources (or take it out)."""
        srcs = self.srcs[self.dom[p]]
        old = self.skey[p]
        if old is not None:
            del srcs[bisect_left(srcs, (old, p))]
        lst = self.on[p]
        if self.exc[p] > 0.0 and lst:
            key = min(self.exc[p], lst[-1][0])
            self.skey[p] = key
            insort(srcs, (key, p))
        else:
            self.skey[p] = None

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
            self.on_load[i] -= w
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
        self.clock += 1
        self.gave[i] = self.took[j] = self.clock
        self.touched.append((i, j))
        d = self.dom[i]
        order = self.order[d]
        exc = self.exc
        for p in (i, j):
            old = (exc[p], p)
            del order[bisect_left(order, old)]
            exc[p] = self.load[p] - self.target[p]
            new = (exc[p], p)
            insort(order, new)
            if self.tiers:
                self._retier_all(d, p, old, new)
            self.rekey(p)
        if exc[i] < 0.0:
            self.freed[d] += 1
        after = abs(self.exc[i]) + abs(self.exc[j])
        self.dev += after - before
        return before - after

    def _retier_all(self, d: int, p: int, old: tuple[float, int], new: tuple[float, int]) -> None:
        """Move processor p from ``old`` to ``new`` in each tier of domain d it is in."""
        gp, mp = self.gpus[p], self.mem[p]
        for by_dom, (g, m) in zip(self.tiers, self.tier_keys, strict=True):
            tier = by_dom[d]
            x = bisect_left(tier, old)
            if x < len(tier) and tier[x] == old:
                del tier[x]
            if gp >= g and mp >= m:
                insort(tier, new)

    def destinations(self, k: int, d: int) -> list[tuple[float, int]]:
        """The pairs (exc, index) of domain d, by excess, that unit k need look at:
        the processors that could meet its GPU or memory need (a superset)."""
        u = self.units[k]
        t = self.tier_of.get((u.gpus > 0, u.mem), -1)
        return self.order[d] if t < 0 else self.tiers[t][d]

    def revert(self, k: int, i: int) -> None:
        """Undo :meth:`apply` of unit k, back to processor i (a trial that did not pay)."""
        self.apply(k, i)
        insort(self.on[i], (self.units[k].load, k))
        self.on_load[i] += self.units[k].load
        self.rekey(i)

    def beta(self) -> float:
        """beta of the state now."""
        return self.dev / self.total if self.total > 0 else 0.0


def _quantiles(xs: list[float]) -> list[float]:
    """``_MEM_TIERS`` evenly spaced values of the sorted ``xs`` (all of them if fewer)."""
    if len(xs) <= _MEM_TIERS:
        return xs
    return sorted({xs[len(xs) * q // (_MEM_TIERS + 1)] for q in range(1, _MEM_TIERS + 1)})


def make_move(st: State, k: int, j: int, why: str) -> Move:
    """Move unit k to processor j in ``st`` and describe the move."""
    u, i = st.units[k], st.where[k]
    e, d = st.load[i] - st.target[i], st.target[j] - st.load[j]
    reason = f"{st.procs[i].id} {e:+.3g} from its target, {st.procs[j].id} {-d:+.3g}"
    real = st.apply(k, j)
    return built(
        Move,
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


def built(cls: type[_T], **fields: object) -> _T:
    """An instance of the frozen dataclass ``cls`` from all its fields, already checked,
    without its generated ``__init__`` (which sets each field through
    ``object.__setattr__``: 13-16 us a Move on the loaded 2-core machine, 2 us this way;
    a 4,096-core plan makes 8,800 of them). Equal and hashed as if built the usual way.
    """
    missing = cls.__dataclass_fields__.keys() - fields.keys()  # type: ignore[attr-defined]
    if missing:
        raise TypeError(f"{cls.__name__}: missing {sorted(missing)}")
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def ordered(
    processors: Sequence[Processor],
    units: Sequence[Unit],
    constraints: Constraints,
    target: dict[str, str],
    why: str,
) -> tuple[State, list[Move]] | None:
    """Moves that reach the end state ``target`` (unit id -> processor id), in an order
    in which each is feasible when made, the best gain first; None if there is none."""
    st = State.build(processors, units, constraints)
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
        out.append(make_move(st, k, j, why))
    return st, out


def base_of(st: State) -> tuple[list[float], list[list[float]]]:
    """Each processor's load without its movable units, and each domain's movable loads."""
    base = list(st.load)
    movable: list[list[float]] = [[] for _ in st.members]
    for i, lst in enumerate(st.on):
        for w, _k in lst:
            base[i] -= w
            movable[st.dom[i]].append(w)
    return base, movable


def floor_of(st: State) -> float:
    """:func:`llmaos_tui.balance.planner.floor` of a state before any move."""
    base, movable = base_of(st)
    if st.total <= 0.0:
        return 0.0
    excess = 0.0
    for d, mem in enumerate(st.members):
        fixed = sum(max(0.0, base[i] - st.target[i]) for i in mem)
        # Base minus target: the increment is measured against the processor's own target.
        slack = min(base[i] - st.target[i] for i in mem)
        extra = sum(max(0.0, slack + w) - max(0.0, slack) for w in movable[d])
        excess += fixed + extra
    return min(2.0 * excess / st.total, st.beta())
