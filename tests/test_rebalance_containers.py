"""Host-level balancing with containers: the planner's input built from a fleet's state.

The fleet is filled the way the console fills it: each host's hello, samples, request
deltas and container deltas as the agents send them (real protocol structs, through the
wire's encoder and strict decoder). What is a unit, what is pinned and why, the replica
groups, each host's capacity, free memory and free GPUs, the ``units`` choice, and the
plans that come out. Moving containers for real is in test_plan_containers_testbed.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from llmaos_agent import protocol as p
from llmaos_tui.balance import Move
from llmaos_tui.cli_plan import units_arg
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.ops.audit import AuditLog
from llmaos_tui.ops.engine_pool import EnginePool
from llmaos_tui.ops.journal import MoveJournal
from llmaos_tui.ops.rebalance import (
    CONTAINER_COST,
    ContainerMoves,
    apply_move,
    plan_fleet,
    problem_from_fleet,
)

GIB = 1 << 30


def wire(struct: Any) -> Any:
    """Through the wire and back, decoded as strictly as the console decodes."""
    return msgspec.json.decode(msgspec.json.encode(struct), type=type(struct))


def hello(name: str, cores: int, docker: bool = True, read_only: bool = False) -> p.Hello:
    return p.Hello(
        protocol=p.PROTOCOL_VERSION, agent_version="0.1.0", pid=100,
        host=p.HostFacts(hostname=name, os="Linux", os_release="6.1", arch="x86_64",
                         python="3.11", user="ops", cores=cores, physical_cores=cores,
                         mem_total=64 * GIB, boot_time=1.0),
        caps=p.Capabilities(affinity=True, cpu_num=True, nvml=False, nvml_reason=None,
                            docker=docker, docker_reason=None if docker else "no engine",
                            root=True, read_only=read_only),
        interval=1.0, proc_interval=2.0,
    )  # fmt: skip


def container(name: str, cpu: float, **kw: Any) -> p.Container:
    kw.setdefault("state", "running")
    return p.Container(
        id=(name.encode().hex() + "0" * 64)[:64], name=name, image="llmaos-test/busybox:1",
        image_id="sha256:" + "ab" * 32, status="Up 2 minutes", created=1.0, cpu=cpu,
        **kw,
    )  # fmt: skip


def request(rid: str, state: str, cpus: int, **kw: Any) -> p.RequestInfo:
    return p.RequestInfo(
        id=rid, name=rid, argv=["sleep", "60"], shell=False, priority=0, cpus=cpus,
        gpus=kw.pop("gpus", 0), share_gpu=kw.pop("share_gpu", False), mem=kw.pop("mem", 0),
        state=state, seq=1, submitted=1.0, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def add_host(
    fleet: FleetState,
    name: str,
    cpu: list[float],
    *,
    containers: list[p.Container] = (),  # type: ignore[assignment]
    requests: list[p.RequestInfo] = (),  # type: ignore[assignment]
    gpus: int = 0,
    available: int = 32 * GIB,
    docker: bool = True,
    read_only: bool = False,
) -> HostState:
    h = fleet.add(name)
    h.on_hello(wire(hello(name, len(cpu), docker, read_only)))
    gs = [p.GpuSample(index=i, uuid=f"GPU-{name}-{i}", name="H100", util=0.0) for i in range(gpus)]
    mem = p.Memory(64 * GIB, 64 * GIB - available, available, 0, 0)
    h.on_sample(wire(p.Sample(t=1.0, seq=1, cpu=cpu, mem=mem, gpus=gs)))
    h.on_requests(wire(p.RequestDelta(full=True, upsert=list(requests))))
    h.on_containers(wire(p.ContainerDelta(full=True, upsert=list(containers))))
    h.set_status(HostStatus.UP)
    return h


def units_by_name(fleet: FleetState, **kw: Any) -> dict[str, Any]:
    _procs, units = problem_from_fleet(fleet, "hosts", **kw)
    return {u.name: u for u in units}


def test_running_containers_are_units_with_their_load_memory_and_gpus() -> None:
    fleet = FleetState()
    web = container("web", 1.5, mem=2 * GIB, volumes=["webdata:/data"], gpus=1)
    add_host(fleet, "a", [0.9, 0.8, 0.1, 0.2], gpus=2,
             containers=[web, container("old", 0.0, state="exited")])  # fmt: skip
    units = units_by_name(fleet)
    assert set(units) == {"web"}  # a stopped container carries nothing to balance
    u = units["web"]
    assert u.id == f"a/ct:web@{web.id[:12]}" and u.kind == "container"
    assert (u.load, u.mem, u.gpus, u.processor) == (1.5, 2.0 * GIB, 1, "a")
    assert not u.pinned and u.group is None and u.cost == CONTAINER_COST


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"volumes": ["/srv/models:/models", "cache:/cache"]}, "bind mount"),
        ({"gpus": -1}, "all GPUs"),
        ({"orchestrator": "swarm"}, "another orchestrator's"),
        ({"orchestrator": "kubernetes"}, "another orchestrator's"),
        ({"health": "unhealthy"}, "failing health check"),
        ({"health": "starting"}, "health not yet known"),
    ],
)
def test_containers_a_move_would_break_are_pinned(kw: dict[str, Any], why: str) -> None:
    fleet = FleetState()
    add_host(fleet, "a", [1.0, 1.0], containers=[container("x", 1.0, **kw)], gpus=2)
    assert units_by_name(fleet)["x"].pinned, why


def test_what_moves_safely_is_not_pinned_and_a_kept_source_is() -> None:
    fleet = FleetState()
    add_host(fleet, "a", [1.0, 1.0], containers=[
        container("named", 0.5, volumes=["data:/data"], health="healthy", project="shop",
                  service="api"),
        container("web.moved-3f2a9c1b", 0.5),  # what a move with --keep-source leaves
    ])  # fmt: skip
    units = units_by_name(fleet)
    assert not units["named"].pinned
    assert units["web.moved-3f2a9c1b"].pinned


def test_compose_replicas_form_one_group_across_hosts() -> None:
    fleet = FleetState()
    rep = {"project": "shop", "service": "api"}
    add_host(fleet, "a", [1.0, 1.0], containers=[
        container("shop-api-1", 0.5, **rep), container("shop-api-2", 0.5, **rep),
        container("shop-db-1", 0.5, project="shop", service="db"), container("solo", 0.5),
    ])  # fmt: skip
    add_host(fleet, "b", [0.0, 0.0], containers=[container("shop-api-3", 0.1, **rep)])
    units = units_by_name(fleet)
    groups = {n: u.group for n, u in units.items()}
    assert groups == {
        "shop-api-1": "compose:shop/api", "shop-api-2": "compose:shop/api",
        "shop-api-3": "compose:shop/api", "shop-db-1": "compose:shop/db", "solo": None,
    }  # fmt: skip


def test_host_processor_capacity_load_memory_and_gpus() -> None:
    fleet = FleetState()
    add_host(
        fleet, "a", [0.5, 0.5, 0.5, 0.5], gpus=4, available=10 * GIB,
        containers=[container("train", 1.0, gpus=1), container("all", 0.5, gpus=-1, state="exited"),
                    container("infer", 0.2, gpus=1)],
        requests=[request("rq1", "queued", 2), request("rq2", "queued", 1),
                  request("rr1", "running", 1, gpus=1), request("rr2", "running", 1, gpus=1,
                                                              share_gpu=True),
                  request("rh1", "held", 4)],
    )  # fmt: skip
    add_host(fleet, "b", [0.0, 0.0], containers=[container("everything", 0.1, gpus=-1)], gpus=2)
    procs, _units = problem_from_fleet(fleet, "hosts")
    a, b = procs
    # Busy cores plus what the waiting requests ask for (held ones are not waiting to run).
    assert (a.id, a.kind, a.capacity) == ("a", "host", 4.0)
    assert a.load == pytest.approx(2.0 + 3)
    assert a.mem_free == 10 * GIB
    # 4 GPUs, less the running containers' (1 + 1; the exited one holds none) and the
    # running request's own (a shared one is not held).
    assert a.gpus_free == 1
    assert b.gpus_free == 0  # "all" holds every one


def test_units_choose_what_a_host_plan_may_move() -> None:
    fleet = FleetState()
    add_host(fleet, "a", [1.0, 1.0], containers=[container("web", 1.0)],
             requests=[request("rq1", "queued", 1)])  # fmt: skip
    add_host(fleet, "b", [0.0, 0.0])

    def pinned(units: Any) -> dict[str, bool]:
        return {n: u.pinned for n, u in units_by_name(fleet, units=units).items()}

    assert pinned(None) == {"web": False, "rq1": False}
    assert pinned({"containers"}) == {"web": False, "rq1": True}
    assert pinned({"requests"}) == {"web": True, "rq1": False}
    # The load stays where it is either way: the hosts' loads do not depend on the choice.
    assert (
        problem_from_fleet(fleet, "hosts", units={"requests"})[0]
        == problem_from_fleet(fleet, "hosts", units={"containers"})[0]
    )


def test_plan_moves_a_container_off_the_host_with_queued_demand() -> None:
    fleet = FleetState()
    add_host(fleet, "a", [0.3] * 4, containers=[container("busy", 0.4),
             container("bound", 0.4, volumes=["/srv:/srv"])],
             requests=[request("rq1", "queued", 2), request("rq2", "queued", 2)])  # fmt: skip
    add_host(fleet, "b", [0.3] * 4)
    plan = plan_fleet(fleet, "hosts", units={"containers"})
    moves = [(m.kind, m.name, m.src, m.dst) for m in plan.moves]
    assert moves == [("container", "busy", "a", "b")]  # never the bind-mounted one
    assert plan.beta_after_predicted < plan.beta_before
    # Both kinds: one waiting request evens the hosts out, better than any container.
    both = plan_fleet(fleet, "hosts")
    assert [m.kind for m in both.moves] == ["request_queued"]
    assert both.beta_after_predicted < plan.beta_after_predicted


def test_plan_keeps_replicas_apart_and_gpu_work_where_gpus_are() -> None:
    fleet = FleetState()
    rep = {"project": "shop", "service": "api"}
    add_host(fleet, "hot", [1.0, 1.0, 1.0, 1.0], gpus=1, containers=[
        container("shop-api-1", 1.0, **rep), container("shop-api-2", 1.0, **rep),
        container("trainer", 1.0, gpus=1),
    ])  # fmt: skip
    add_host(
        fleet, "has-api", [0.0, 0.0, 0.0, 0.0], containers=[container("shop-api-3", 0.0, **rep)]
    )
    add_host(fleet, "idle", [0.0, 0.0, 0.0, 0.0])
    plan = plan_fleet(fleet, "hosts")
    dst = {m.name: m.dst for m in plan.moves}
    assert "trainer" not in dst  # no other host has a GPU free
    api_moves = [n for n in dst if n.startswith("shop-api")]
    assert len(api_moves) == 1 and dst[api_moves[0]] == "idle"  # never beside shop-api-3


def test_containers_go_only_where_an_engine_takes_them() -> None:
    fleet = FleetState()
    add_host(fleet, "hot", [1.0] * 4, containers=[container("web", 1.0), container("api", 1.0)])
    add_host(fleet, "no-docker", [0.0] * 4, docker=False)
    add_host(fleet, "frozen", [0.0] * 4, read_only=True, containers=[container("db", 0.5)])
    add_host(fleet, "open", [0.0] * 4)
    assert units_by_name(fleet)["db"].pinned  # its agent runs read-only: nothing changes there
    plan = plan_fleet(fleet, "hosts")
    assert plan.moves and {m.dst for m in plan.moves} == {"open"}


def test_units_option_parses_and_refuses() -> None:
    assert units_arg("requests,containers") == {"requests", "containers"}
    assert units_arg(" containers ") == {"containers"}
    for bad in ("", "vms", "requests,vms"):
        with pytest.raises(argparse.ArgumentTypeError):
            units_arg(bad)
    tui = [sys.executable, "-m", "llmaos_tui", "--no-local", "plan"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*tui, *args], capture_output=True, text=True, timeout=60,
                              check=False)  # fmt: skip

    cp = run("--units", "vms")
    assert cp.returncode == 2 and "requests, containers or both" in cp.stderr
    cp = run("--level", "cores", "--units", "containers")
    assert cp.returncode == 2 and "--level hosts" in cp.stderr


async def test_container_moves_fail_as_outcomes(tmp_path: Path) -> None:
    """Read-only, no engines, an unknown host: an Outcome that says so, never an exception,
    and nothing in the journal."""
    m = Move(unit="a/ct:web@0123456789ab", src="a", dst="b", load=1.0, gain=0.1,
             beta_after=0.1, reason="", kind="container", name="web")  # fmt: skip
    audit = AuditLog(tmp_path / "audit.jsonl")
    journal = MoveJournal(tmp_path / "moves.sqlite")
    fleet = FleetState()
    pool = EnginePool(lambda _h: None, fleet.hosts.get)  # no host has a link
    moves = ContainerMoves(pool.get, journal)

    async def no_call(_method: str, _params: Any) -> Any:
        raise AssertionError("a container move asks no agent")

    def caller(_h: str) -> Any:
        return no_call

    out = await apply_move(m, caller, audit=audit, read_only=True, containers=moves)
    assert not out.ok and "read-only" in out.message
    out = await apply_move(m, caller, audit=audit, read_only=False)
    assert not out.ok and "engines" in out.message
    out = await apply_move(m, caller, audit=audit, read_only=False, containers=moves)
    assert not out.ok and "web stays on a" in out.message and "no host 'a'" in out.message
    bad = Move(unit="a/web", src="a", dst="b", load=1.0, gain=0.1, beta_after=0.1,
               reason="", kind="container", name="web")  # fmt: skip
    out = await apply_move(bad, caller, audit=audit, read_only=False, containers=moves)
    assert not out.ok and "not a container move" in out.message
    assert journal.unfinished() == []
    journal.close()


def test_a_saved_snapshot_plans_the_containers_as_the_live_fleet_does() -> None:
    from llmaos_tui.balance import plan_from_snapshot
    from llmaos_tui.cli import _host_json

    fleet = FleetState()
    add_host(fleet, "a", [0.3] * 4, gpus=1, containers=[
        container("busy", 0.4, project="shop", service="api"),
        container("bound", 0.4, volumes=["/srv:/srv"]), container("trainer", 0.5, gpus=1),
    ], requests=[request("rq1", "queued", 2), request("rq2", "queued", 2)])  # fmt: skip
    add_host(fleet, "b", [0.3] * 4)
    doc = {"hosts": [_host_json(h) for h in fleet.hosts.values()]}
    doc = json.loads(json.dumps(doc))  # as saved to a file
    a = doc["hosts"][0]
    assert (a["gpus_free"], a["mem_available"]) == (0, 32 * GIB)
    assert {c["name"]: (c["pinned"], c["group"]) for c in a["containers"]} == {
        "busy": (False, "compose:shop/api"), "bound": (True, None), "trainer": (False, None),
    }  # fmt: skip
    live = plan_fleet(fleet, "hosts")
    saved = plan_from_snapshot(doc, level="hosts")
    assert [(m.kind, m.name, m.dst) for m in saved.moves] == [
        (m.kind, m.name, m.dst) for m in live.moves
    ]
    assert saved.beta_before == pytest.approx(live.beta_before)
