"""Which request or container each GPU process belongs to (llmaos_tui/fleet/gpu_owners.py).

With real processes: a request submitted through the real agent's queue (its child is the
GPU process), and a container of a real dockerd on a testbed host (its init and a child of
it), read through the agent's own process table and container collector. NVML is the one
stand-in: a GPU's process list names those pids, as the driver would. And the table's
hostile cases: a shim that is not root, a forged or unlisted id, a ppid loop.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmaos_agent.collect.containers import ContainerCollector, container_id_of
from llmaos_agent.collect.processes import ProcessCollector
from llmaos_agent.collect.sampler import to_wire
from llmaos_agent.protocol import (
    Container,
    GpuProc,
    GpuSample,
    Proc,
    RequestInfo,
    RequestRef,
    RequestSpec,
)
from llmaos_tui.fleet.gpu_owners import LABEL_MAX, gpu_owners, host_gpu_owners
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.watching import Watching
from tests.conftest import need_docker_testbed
from tests.helpers import wait_for

DEADLINE = 60.0
CID = "a" * 64


def _gpu(*pids: int, index: int = 0) -> GpuSample:
    return GpuSample(
        index=index,
        uuid=f"GPU-{index}",
        name="H100",
        procs=[GpuProc(pid, 1 << 30) for pid in pids],
    )


# ------------------------------------------------------------------- a real request


@pytest.mark.integration
async def test_a_requests_child_on_a_gpu_is_the_requests(agent_home: Path) -> None:
    # The request's leader starts a worker and waits: the worker is what holds the GPU.
    code = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    async with Watching([LocalLink("local")]) as watching:
        w = watching.by_name["local"]
        host = w.state
        await wait_for(lambda: host.sample is not None, DEADLINE, what="a first sample")
        info: RequestInfo = await w.call(
            "requests.submit",
            RequestSpec(argv=[sys.executable, "-c", code], name="trainer", cpus=0),
        )
        try:

            def worker() -> int | None:
                r = host.requests.get(info.id)
                if r is None or r.state != "running" or r.pid is None:
                    return None
                kids = [p.pid for p in host.procs.values() if p.ppid == r.pid]
                return kids[0] if kids else None

            await wait_for(lambda: worker() is not None, DEADLINE, what="the request's worker")
            pid = worker()
            assert pid is not None and host.procs[pid].name == "sleep"
            leader = host.requests[info.id].pid
            assert leader is not None
            gpus = [_gpu(pid, os.getpid()), _gpu(leader, index=1)]
            owners = gpu_owners(gpus, host.procs, host.requests.values(), host.containers)
            # This test's own process is on a GPU too, and belongs to no request.
            assert owners == {pid: f"req:{info.id}", leader: f"req:{info.id}"}
            # Without the table (processes off) only the leader itself is placed.
            bare = gpu_owners(gpus, {}, host.requests.values(), {})
            assert bare == {leader: f"req:{info.id}"}
        finally:
            await w.call("requests.cancel", RequestRef(id=info.id))
        # Once it has ended its pids are nobody's.
        await wait_for(
            lambda: host.requests[info.id].state != "running", DEADLINE, what="the cancel"
        )
        assert gpu_owners([_gpu(pid)], host.procs, host.requests.values(), {}) == {}


# ------------------------------------------------------------------- a real container


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[Any, Path]]:
    """A docker client on a one-host testbed's own dockerd, with the busybox image."""
    import docker

    from tests import images
    from tests.testbed import Testbed

    need_docker_testbed()
    with Testbed(n=1, docker=True) as bed:
        sock = bed.hosts[0].docker_socket
        images.import_image(sock)
        d = docker.DockerClient(base_url=f"unix://{sock}")
        try:
            yield d, sock
        finally:
            d.close()


@pytest.mark.integration
def test_a_containers_processes_on_a_gpu_are_the_containers(engine: tuple[Any, Path]) -> None:
    from tests import images

    d, sock = engine
    c = d.containers.run(
        images.TEST_TAG, ["sh", "-c", "sleep 300 & wait"], name="vllm-7", detach=True
    )
    try:
        c.reload()
        init = int(c.attrs["State"]["Pid"])
        procs = ProcessCollector()
        try:

            def child() -> int | None:
                table = procs.snapshot()
                kids = [p.pid for p in table.values() if p.ppid == init]
                return kids[0] if kids else None

            end = time.monotonic() + DEADLINE
            while (kid := child()) is None:
                assert time.monotonic() < end, "the container's sleep did not start"
                time.sleep(0.1)
            table = procs.snapshot()
        finally:
            procs.close()
        collector = ContainerCollector(str(sock), use_sdk=False)
        try:
            assert collector.refresh(), collector.reason
            containers = {x.id: to_wire(x) for x in collector.snapshot(table)}
        finally:
            collector.close()
        assert c.id in containers
        gpus = [_gpu(kid, os.getpid())]
        assert gpu_owners(gpus, table, [], containers) == {kid: "ctr:vllm-7"}
        # The cgroup (proc.detail's word) says the same, and wins without the table.
        cgroup = Path(f"/proc/{kid}/cgroup").read_text()
        assert container_id_of(cgroup) == c.id
        assert gpu_owners(gpus, {}, [], containers, cgroups={kid: c.id}) == {kid: "ctr:vllm-7"}
    finally:
        c.remove(force=True)


# ------------------------------------------------------------------- the table's cases


def _proc(pid: int, ppid: int, name: str, user: str = "ops", cmd: str = "") -> Proc:
    return Proc(pid, ppid, name, user, 0.0, 0, 0, None, None, "S", 0.0, None, cmd or name)


def _ctr(cid: str, name: str) -> Container:
    return Container(
        id=cid, name=name, image="x", image_id="sha", state="running", status="Up", created=0.0
    )


SHIM = f"/usr/bin/containerd-shim-runc-v2 -namespace moby -id {CID} -address /run/x.sock"


def test_only_a_root_shim_naming_a_listed_container_places_a_process() -> None:
    table = {
        1: _proc(1, 0, "systemd", "root"),
        10: _proc(10, 1, "containerd-shim-runc-v2", "root", SHIM),
        11: _proc(11, 10, "python3"),
        12: _proc(12, 11, "worker"),
        20: _proc(20, 1, "containerd-shim-runc-v2", "mallory", SHIM),  # forged, not root
        21: _proc(21, 20, "python3", "mallory"),
    }
    gpus = [_gpu(12, 21)]
    got = gpu_owners(gpus, table, [], {CID: _ctr(CID, "vllm\x1b[2J")})
    assert got == {12: "ctr:vllm\\e[2J"}  # cleaned: no escape reaches the terminal
    assert gpu_owners(gpus, table, [], {}) == {}  # an id the engine does not list
    long = gpu_owners(gpus, table, [], {CID: _ctr(CID, "n" * 200)})[12]
    assert len(long) == LABEL_MAX and long.endswith("…")


def test_a_ppid_loop_or_a_missing_parent_ends_the_walk() -> None:
    table = {5: _proc(5, 6, "a"), 6: _proc(6, 5, "b"), 7: _proc(7, 99, "c")}
    assert gpu_owners([_gpu(5, 7, 8)], table, [], {}) == {}


def test_a_pid_on_two_gpus_is_placed_once_and_a_held_request_owns_nothing() -> None:
    req = RequestInfo(
        id="r-1", name="t", argv=["x"], shell=False, priority=0, cpus=1, gpus=1,
        share_gpu=False, mem=0, state="running", seq=1, submitted=0.0, pid=40,
    )  # fmt: skip
    held = RequestInfo(
        id="r-2", name="h", argv=["x"], shell=False, priority=0, cpus=1, gpus=1,
        share_gpu=False, mem=0, state="held", seq=2, submitted=0.0, pid=50,
    )  # fmt: skip
    table = {40: _proc(40, 1, "lead"), 41: _proc(41, 40, "rank0"), 50: _proc(50, 1, "old")}
    got = gpu_owners([_gpu(41, 50), _gpu(41, index=1)], table, [req, held], {})
    assert got == {41: "req:r-1"}
    # The leader gone and its pid reused by another user's process: not the request's.
    reused = {40: _proc(40, 1, "theirs", "mallory"), 41: _proc(41, 40, "rank0", "mallory")}
    assert gpu_owners([_gpu(41)], reused, [req], {}, requests_user="alice") == {}
    assert gpu_owners([_gpu(41)], table, [req], {}, requests_user=table[40].user) == got


def test_host_gpu_owners_reads_the_hosts_state() -> None:
    from llmaos_agent.protocol import Memory, Sample
    from llmaos_tui.fleet.state import HostState

    h = HostState(name="box")
    assert host_gpu_owners(h) == {}
    h.procs = {
        10: _proc(10, 1, "containerd-shim-runc-v2", "root", SHIM),
        11: _proc(11, 10, "python3"),
    }
    h.containers = {CID: _ctr(CID, "trainer")}
    h.on_sample(Sample(t=1.0, seq=1, cpu=[0.1], mem=Memory(1, 1, 0, 0, 0), gpus=[_gpu(11)]))
    assert host_gpu_owners(h) == {11: "ctr:trainer"}
