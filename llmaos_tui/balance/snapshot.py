"""From the fleet document that ``llmaos-tui snapshot --json`` prints to planner input.

The document (see ``llmaos_tui/cli.py``) has ``hosts``, each with ``name``,
``status``, ``cores``, ``core_loads`` and ``gpu_loads``. Only hosts whose status is
"up" take part. Optional fields, which later issues fill and which a hand-written
what-if document may carry, per host:

- ``processes``: a count (what ``snapshot`` prints today: no unit detail, so every
  core's load is background) or a list of ``{"pid", "name", "cpu", "core",
  "pinned"}``, ``cpu`` in percent of one core as top shows it, ``core`` the core it
  runs on (processes without one are skipped);
- ``requests``: ``{"id", "name", "state", "cpus", "gpus", "mem", "gpu", "gpu_load",
  "pinned"}``: ``state`` "queued" or "running"; ``cpus`` cores and ``gpus`` devices
  it needs; ``mem`` bytes; ``gpu`` the index of the GPU a queued request is placed
  on and ``gpu_load`` the utilisation it will bring there (default 1.0);
- ``containers``: ``{"id", "name", "cpu", "mem", "gpus", "group", "pinned",
  "cost"}``: ``cpu`` in busy cores, ``group`` its replica set (anti-affinity);
- ``mem_available`` (bytes; else ``mem_total`` with ``mem``, the used fraction) and
  ``gpus_free`` (else the host's GPUs less those its containers and running
  requests hold).

Levels: ``cores`` (each host's cores, processes move by affinity), ``gpus`` (each
host's GPUs, queued requests are re-placed; running work stays), ``hosts`` (the fleet,
capacity-weighted: containers and queued requests move; load in busy cores).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from llmaos_tui.balance.model import Budget, Constraints, Level, Plan, Processor, Unit
from llmaos_tui.balance.planner import plan


class SnapshotError(ValueError):
    """The document is not a fleet snapshot the planner can read."""


def problem_from_snapshot(
    doc: Mapping[str, Any], level: Level, hosts: Iterable[str] | None = None
) -> tuple[list[Processor], list[Unit]]:
    """Processors and units of one level, from the hosts that are up (or those named)."""
    raw = doc.get("hosts")
    if not isinstance(raw, list):
        raise SnapshotError("a fleet snapshot has a 'hosts' list")
    wanted = set(hosts) if hosts is not None else None
    chosen = [
        h
        for h in raw
        if isinstance(h, Mapping)
        and h.get("status") == "up"
        and (wanted is None or h.get("name") in wanted)
    ]
    procs: list[Processor] = []
    units: list[Unit] = []
    for h in chosen:
        name = str(h.get("name", ""))
        if level == "cores":
            _cores(h, name, procs, units)
        elif level == "gpus":
            _gpus(h, name, procs, units)
        elif level == "hosts":
            _host(h, name, procs, units)
        else:
            raise SnapshotError(f"unknown level {level!r}")
    return procs, units


def plan_from_snapshot(
    doc: Mapping[str, Any],
    level: Level = "hosts",
    budget: Budget | None = None,
    constraints: Constraints | None = None,
    hosts: Iterable[str] | None = None,
) -> Plan:
    """A plan for one level of the fleet a snapshot document describes."""
    procs, units = problem_from_snapshot(doc, level, hosts)
    if not procs:
        return Plan(level, 0.0, 0.0, 0.0, (), (), "no host is up with this level's processors")
    return plan(procs, units, level=level, budget=budget, constraints=constraints)


def _num(d: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    v = d.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
        raise SnapshotError(f"{key!r} must be a number >= 0, not {v!r}")
    return float(v)


def _list(h: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    v = h.get(key)
    if v is None or isinstance(v, int):
        return []  # absent, or a bare count: no detail to plan with
    if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
        raise SnapshotError(f"host {h.get('name')!r}: {key!r} must be a list of objects")
    return v


def _loads(h: Mapping[str, Any], key: str) -> list[float]:
    v = h.get(key) or []
    if not isinstance(v, list):
        raise SnapshotError(f"host {h.get('name')!r}: {key!r} must be a list")
    return [max(0.0, float(x)) for x in v]


def _cores(h: Mapping[str, Any], name: str, procs: list[Processor], units: list[Unit]) -> None:
    loads = _loads(h, "core_loads")
    for i, x in enumerate(loads):
        procs.append(Processor(f"{name}/cpu{i}", name, "core", x))
    for p in _list(h, "processes"):
        core = p.get("core")
        cpu = _num(p, "cpu") / 100.0
        if not isinstance(core, int) or not 0 <= core < len(loads) or cpu <= 0.0:
            continue
        units.append(
            Unit(
                id=f"{name}/pid{p.get('pid')}",
                kind="process",
                # One thread's worth: affinity to one core cannot carry more than that core.
                load=min(cpu, 1.0),
                processor=f"{name}/cpu{core}",
                pinned=bool(p.get("pinned", False)),
                name=str(p.get("name", "")),
            )
        )


def _gpus(h: Mapping[str, Any], name: str, procs: list[Processor], units: list[Unit]) -> None:
    loads = _loads(h, "gpu_loads")
    queued: list[tuple[int, Mapping[str, Any]]] = []
    for r in _list(h, "requests"):
        g = r.get("gpu")
        if r.get("state") == "queued" and isinstance(g, int) and 0 <= g < len(loads):
            queued.append((g, r))
    extra = [0.0] * len(loads)
    for g, r in queued:
        extra[g] += _num(r, "gpu_load", 1.0)
    for i, x in enumerate(loads):
        # A queued request's demand is not measured yet: it is added where it is placed.
        procs.append(Processor(f"{name}/gpu{i}", name, "gpu", x + extra[i]))
    for g, r in queued:
        units.append(
            Unit(
                id=f"{name}/req{r.get('id')}",
                kind="request_queued",
                load=_num(r, "gpu_load", 1.0),
                processor=f"{name}/gpu{g}",
                pinned=bool(r.get("pinned", False)),
                name=str(r.get("name", "")),
            )
        )


def _host(h: Mapping[str, Any], name: str, procs: list[Processor], units: list[Unit]) -> None:
    loads = _loads(h, "core_loads")
    cores = h.get("cores") or len(loads)
    if not isinstance(cores, int) or cores <= 0:
        return
    containers = _list(h, "containers")
    requests = _list(h, "requests")
    queued = [r for r in requests if r.get("state") == "queued"]
    held_gpus = sum(int(_num(c, "gpus")) for c in containers) + sum(
        int(_num(r, "gpus")) for r in requests if r.get("state") == "running"
    )
    if "gpus_free" in h and h["gpus_free"] is not None:
        gpus_free: int | None = int(_num(h, "gpus_free"))
    else:
        gpus_free = max(0, len(_loads(h, "gpu_loads")) - held_gpus)
    mem_free: float | None = None
    if h.get("mem_available") is not None:
        mem_free = _num(h, "mem_available")
    elif h.get("mem_total") is not None and h.get("mem") is not None:
        mem_free = _num(h, "mem_total") * max(0.0, 1.0 - _num(h, "mem"))
    # Queued work is not running yet: its demand is added to the host's busy cores.
    busy = sum(loads) + sum(_num(r, "cpus", 1.0) for r in queued)
    procs.append(Processor(name, name, "host", busy, float(cores), mem_free, gpus_free))
    for c in containers:
        units.append(
            Unit(
                id=f"{name}/ctr{c.get('id')}",
                kind="container",
                load=_num(c, "cpu"),
                processor=name,
                mem=_num(c, "mem"),
                gpus=int(_num(c, "gpus")),
                pinned=bool(c.get("pinned", False)),
                group=str(c["group"]) if c.get("group") is not None else None,
                cost=_num(c, "cost", 1.0),
                name=str(c.get("name", "")),
            )
        )
    for r in queued:
        units.append(
            Unit(
                id=f"{name}/req{r.get('id')}",
                kind="request_queued",
                load=_num(r, "cpus", 1.0),
                processor=name,
                mem=_num(r, "mem"),
                gpus=int(_num(r, "gpus")),
                pinned=bool(r.get("pinned", False)),
                name=str(r.get("name", "")),
            )
        )


def hosts_in(doc: Mapping[str, Any]) -> Sequence[str]:
    """The names of the hosts that are up in a snapshot document."""
    raw = doc.get("hosts")
    if not isinstance(raw, list):
        return []
    return [str(h.get("name")) for h in raw if isinstance(h, Mapping) and h.get("status") == "up"]
