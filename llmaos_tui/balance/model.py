"""The planner's vocabulary: processors, movable units, constraints, budget, moves, plans.

Plain typed dataclasses, no I/O. A *processor* is what carries load at one level (a
core, a GPU, or a whole host); a *unit* is something that can be moved between
processors (a running process, a request, a container). Processors are grouped in
*domains* (a host's cores, a host's GPUs, or the fleet's hosts): moves never leave a
domain, and each processor's target is its capacity's share of its domain's load,
``T_i = c_i * L_d / C_d`` (DESIGN.md: the capacity-weighted form, which is the plain
mean for cores or GPUs of capacity 1).

beta over several domains is ``sum_i |L_i - T_i| / L``: for one domain it is exactly
``llmaos_agent.metrics.beta`` (equal capacities) or ``beta_fleet`` (hosts), which is
what :func:`beta_of` calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from llmaos_agent.metrics import beta_fleet

ProcessorKind = Literal["core", "gpu", "host"]
UnitKind = Literal["process", "request_running", "request_queued", "container"]
Level = Literal["cores", "gpus", "hosts"]

LEVELS: tuple[Level, ...] = ("cores", "gpus", "hosts")
PROCESSOR_KIND: Mapping[Level, ProcessorKind] = {"cores": "core", "gpus": "gpu", "hosts": "host"}


@dataclass(frozen=True)
class Processor:
    """One core, one GPU or one host, with what it carries now and what it can take.

    ``load`` is everything it carries, the units on it included (utilisation for a
    core or GPU, busy cores for a host; queued demand added by the caller). The part
    not explained by its units is background load that no move can shift.
    ``capacity`` weighs its target (1 for a core or GPU, the core count for a host)
    and, where ``Constraints.capacity`` holds, caps what moves may bring onto it.
    ``mem_free`` (bytes) and ``gpus_free`` (devices) are None when unlimited or
    unknown. ``domain`` defaults to the host for cores and GPUs, "fleet" for hosts.
    """

    id: str
    host: str
    kind: ProcessorKind
    load: float
    capacity: float = 1.0
    mem_free: float | None = None
    gpus_free: int | None = None
    domain: str = ""

    def __post_init__(self) -> None:
        where = f"processor {self.id}"
        finite(f"{where}: load", self.load)
        finite(f"{where}: capacity", self.capacity)
        if self.mem_free is not None:
            finite(f"{where}: mem_free", self.mem_free)
        if self.gpus_free is not None:
            finite(f"{where}: gpus_free", self.gpus_free)
        if not self.load >= 0.0 or not self.capacity > 0.0:
            raise ValueError(f"processor {self.id}: load must be >= 0 and capacity > 0")
        if not self.domain:
            object.__setattr__(self, "domain", "fleet" if self.kind == "host" else self.host)


@dataclass(frozen=True)
class Unit:
    """A movable piece of work on ``processor``, bringing ``load`` to it.

    ``pinned`` units never move (affinity set by their owner, GPU state, bind mounts).
    ``group`` names a replica set: no two units of one group may end on one
    processor (anti-affinity). ``cost`` is the migration cost, used to break ties
    and against ``Budget.max_cost``.
    """

    id: str
    kind: UnitKind
    load: float
    processor: str
    mem: float = 0.0
    gpus: int = 0
    pinned: bool = False
    group: str | None = None
    cost: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        for name in ("load", "mem", "gpus", "cost"):
            finite(f"unit {self.id}: {name}", getattr(self, name))
        if not self.load >= 0.0 or not self.mem >= 0.0 or self.gpus < 0 or not self.cost >= 0:
            raise ValueError(f"unit {self.id}: load, mem, gpus and cost must be >= 0")


@dataclass(frozen=True)
class Constraints:
    """Which limits a move must respect. All on by default.

    ``capacity``: a destination's load after the move stays within
    ``capacity * headroom``. ``frozen`` lists unit ids to treat as pinned for this
    plan (the auto balancer's cool-down uses it); ``forbidden`` lists (unit id,
    processor id) pairs a unit may not move to (it uses that to stop work returning
    where it just came from).
    """

    capacity: bool = True
    headroom: float = 1.0
    memory: bool = True
    gpus: bool = True
    anti_affinity: bool = True
    frozen: frozenset[str] = frozenset()
    forbidden: frozenset[tuple[str, str]] = frozenset()

    def __post_init__(self) -> None:
        if not finite("constraints: headroom", self.headroom) > 0.0:
            raise ValueError(f"constraints: headroom must be > 0, not {self.headroom!r}")


@dataclass(frozen=True)
class Budget:
    """How much change a plan may make.

    ``min_gain`` is the least decrease of beta a move must bring to be worth making;
    None (the default) derives it from the instance (``balance/thresholds.py``: a
    share of the gap left to the floor per processor, so it scales with the fleet).
    ``max_cost`` bounds the summed migration cost of the plan.
    """

    max_moves: int | None = 32
    min_gain: float | None = None
    max_cost: float | None = None

    def __post_init__(self) -> None:
        if self.max_moves is not None:
            if isinstance(self.max_moves, bool) or not isinstance(self.max_moves, int):
                raise ValueError(
                    f"budget: max_moves must be an int or None, not {self.max_moves!r}"
                )
            if self.max_moves < 0:
                raise ValueError(f"budget: max_moves must be >= 0, not {self.max_moves!r}")
        if self.min_gain is not None and not finite("budget: min_gain", self.min_gain) >= 0.0:
            raise ValueError(f"budget: min_gain must be >= 0, not {self.min_gain!r}")
        if self.max_cost is not None and not finite("budget: max_cost", self.max_cost) >= 0.0:
            raise ValueError(f"budget: max_cost must be >= 0, not {self.max_cost!r}")


@dataclass(frozen=True)
class Move:
    """One step of a plan: ``unit`` from ``src`` to ``dst``.

    ``gain`` is the decrease of beta it brings, given the moves before it;
    ``beta_after`` the predicted beta once it and those before it are made.
    """

    unit: str
    src: str
    dst: str
    load: float
    gain: float
    beta_after: float
    reason: str
    kind: UnitKind = "process"
    name: str = ""
    cost: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "kind": self.kind,
            "name": self.name,
            "src": self.src,
            "dst": self.dst,
            "load": self.load,
            "gain": self.gain,
            "beta_after": self.beta_after,
            "reason": self.reason,
            "cost": self.cost,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Move:
        return cls(
            unit=str(d["unit"]),
            src=str(d["src"]),
            dst=str(d["dst"]),
            load=float(d["load"]),
            gain=float(d["gain"]),
            beta_after=float(d["beta_after"]),
            reason=str(d.get("reason", "")),
            kind=_unit_kind(d.get("kind", "process")),
            name=str(d.get("name", "")),
            cost=float(d.get("cost", 1.0)),
        )


@dataclass(frozen=True)
class Slot:
    """What a plan remembers of a processor, enough to re-predict beta for a subset of moves."""

    id: str
    domain: str
    capacity: float
    load: float


@dataclass(frozen=True)
class Plan:
    """A proposed, ordered list of moves with beta before, predicted after, and the floor.

    ``floor`` is a lower bound on beta that no plan can beat, however many moves it
    makes. ``slots`` keep the processors' loads so :meth:`predict` can re-predict
    beta when the operator deselects moves (a unit moves at most once in a plan, so
    any subset of moves is a consistent change of loads).
    """

    level: Level
    beta_before: float
    beta_after_predicted: float
    floor: float
    moves: tuple[Move, ...]
    slots: tuple[Slot, ...] = ()
    note: str = ""

    def predict(self, selected: Iterable[int]) -> float:
        """Predicted beta when only the moves at these indexes are made."""
        loads = {s.id: s.load for s in self.slots}
        for i in selected:
            m = self.moves[i]
            loads[m.src] -= m.load
            loads[m.dst] += m.load
        return beta_of((s.domain, s.capacity, max(0.0, loads[s.id])) for s in self.slots)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "beta_before": self.beta_before,
            "beta_after_predicted": self.beta_after_predicted,
            "floor": self.floor,
            "note": self.note,
            "moves": [m.to_json() for m in self.moves],
            "slots": [
                {"id": s.id, "domain": s.domain, "capacity": s.capacity, "load": s.load}
                for s in self.slots
            ],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Plan:
        level = d["level"]
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}")
        return cls(
            level=level,
            beta_before=float(d["beta_before"]),
            beta_after_predicted=float(d["beta_after_predicted"]),
            floor=float(d["floor"]),
            moves=tuple(Move.from_json(m) for m in d.get("moves", [])),
            slots=tuple(
                Slot(str(s["id"]), str(s["domain"]), float(s["capacity"]), float(s["load"]))
                for s in d.get("slots", [])
            ),
            note=str(d.get("note", "")),
        )


def finite(name: str, value: object) -> float:
    """``value`` as a float if it is a finite number, else ValueError naming the field.

    NaN passes every ``>= 0`` check written as ``not x >= 0`` only by luck, and inf
    makes targets and gains inf or NaN: both are refused where they come in.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def _unit_kind(v: object) -> UnitKind:
    for k in ("process", "request_running", "request_queued", "container"):
        if v == k:
            return k
    raise ValueError(f"unknown unit kind {v!r}")


def beta_of(slots: Iterable[tuple[str, float, float]]) -> float:
    """beta over ``(domain, capacity, load)`` triples, each domain against its own targets.

    One domain: exactly ``beta_fleet`` (and ``beta`` when capacities are equal).
    Several: their deviations summed over the whole load, ``sum_i |L_i - T_i| / L``.
    """
    by_domain: dict[str, list[tuple[float, float]]] = {}
    for dom, cap, load in slots:
        by_domain.setdefault(dom, []).append((cap, load))
    total = sum(load for pairs in by_domain.values() for _c, load in pairs)
    if total <= 0.0:
        return 0.0
    dev = 0.0
    for pairs in by_domain.values():
        dom_load = sum(load for _c, load in pairs)
        dev += beta_fleet(pairs) * dom_load
    return dev / total


@dataclass
class Problem:
    """Processors and units of one level, checked for consistency; what the planner takes."""

    processors: Sequence[Processor]
    units: Sequence[Unit]
    level: Level = "cores"
    by_id: dict[str, Processor] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {}
        for p in self.processors:
            if p.id in self.by_id:
                raise ValueError(f"duplicate processor id {p.id!r}")
            self.by_id[p.id] = p
        seen: set[str] = set()
        for u in self.units:
            if u.id in seen:
                raise ValueError(f"duplicate unit id {u.id!r}")
            seen.add(u.id)
            if u.processor not in self.by_id:
                raise ValueError(f"unit {u.id!r} is on unknown processor {u.processor!r}")
