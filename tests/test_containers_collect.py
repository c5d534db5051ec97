"""The agent's container collector against a real dockerd (one testbed host), with the load of
each container taken from the agent's own process sampling, and without any engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmaos_agent.collect.containers import ContainerCollector, container_id_of
from llmaos_agent.collect.processes import ProcessCollector
from tests import images
from tests.conftest import need
from tests.testbed import Testbed, docker_available

CID = "3f" * 32


@pytest.mark.parametrize(
    "text",
    [
        f"12:memory:/docker/{CID}\n11:cpu:/docker/{CID}\n0::/\n",  # cgroup v1
        f"0::/system.slice/docker-{CID}.scope\n",  # v2, systemd driver
        f"0::/user.slice/user-1000.slice/user@1000.service/docker-{CID}.scope\n",  # rootless
        f"0::/machine.slice/libpod-{CID}.scope\n",  # podman
        f"0::/kubepods/besteffort/pod1/cri-containerd-{CID}.scope\n",
    ],
)
def test_cgroup_names_the_container(text: str) -> None:
    assert container_id_of(text) == CID


@pytest.mark.parametrize(
    "text", ["0::/\n", "0::/user.slice/user-1000.slice/session-3.scope\n", "4:memory:/x/abc\n", ""]
)
def test_cgroup_of_no_container(text: str) -> None:
    assert container_id_of(text) is None


def test_no_engine_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    for use_sdk in (False, None):
        c = ContainerCollector(str(tmp_path / "docker.sock"), use_sdk=use_sdk)
        assert c.refresh() is False
        assert not c.available
        assert c.reason is not None and "docker.sock" in c.reason
        assert c.snapshot({}) == []
        c.close()


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[Testbed, Any]]:
    reason = docker_available() or images.busybox_available()
    need(reason is None, reason or "")
    import docker

    with Testbed(n=1, docker=True) as tb:
        h = tb.hosts[0]
        images.import_image(h.docker_socket)
        d = docker.DockerClient(base_url=f"unix://{h.docker_socket}")
        run = images.TEST_TAG
        d.containers.run(run, ["sh", "-c", "while :; do :; done"], name="busy", detach=True)
        d.containers.run(
            run,
            ["httpd", "-f", "-p", "80"],
            name="idle",
            detach=True,
            ports={"80/tcp": 18080},
            volumes={"idledata": {"bind": "/data"}},
            healthcheck={"test": ["CMD", "true"], "interval": 200_000_000},
            labels={"com.docker.compose.project": "shop", "com.docker.compose.service": "web"},
        )
        d.containers.create(
            run, ["true"], name="stopped", labels={"com.docker.swarm.task.id": "x1"}
        )
        try:
            yield tb, d
        finally:
            for c in d.api.containers(all=True):
                d.api.remove_container(c["Id"], force=True, v=True)
            d.close()


@pytest.mark.parametrize("use_sdk", [True, False], ids=["sdk", "stdlib"])
def test_containers_with_load_from_processes(host: tuple[Testbed, Any], use_sdk: bool) -> None:
    tb, _ = host
    col = ContainerCollector(str(tb.hosts[0].docker_socket), use_sdk=use_sdk)
    procs = ProcessCollector()
    procs.snapshot()
    assert col.refresh(), col.reason
    deadline = time.monotonic() + 30
    while True:  # until the health check has run once
        time.sleep(1.0)  # the window CPU is measured over (load since the last snapshot)
        found = {c.name: c for c in col.snapshot(procs.snapshot())}
        if found["idle"].health == "healthy" or time.monotonic() > deadline:
            break
        col.refresh()
    busy, idle, stopped = found["busy"], found["idle"], found["stopped"]

    assert busy.state == "running" and busy.image == images.TEST_TAG
    # A spinning shell against an idle one: how much of a core it gets depends on the
    # rest of this shared machine, so the check is relative.
    assert busy.cpu > 0.05 and busy.cpu > idle.cpu + 0.05, (busy, idle)
    assert busy.pids == 1 and busy.mem > 0
    assert busy.uptime is not None and busy.uptime >= 0
    assert idle.cpu < 0.2 and idle.mem > 0
    assert idle.health == "healthy" and idle.project == "shop" and idle.service == "web"
    assert idle.orchestrator is None and stopped.orchestrator == "swarm"
    assert "0.0.0.0:18080->80/tcp" in idle.ports  # and [::]:18080 where the engine has IPv6
    assert idle.volumes == ["idledata:/data"]
    assert stopped.state == "created" and stopped.cpu == 0 and stopped.uptime is None
    assert all(c.gpus == 0 for c in found.values())
    col.close()


def test_calls_stay_few(host: tuple[Testbed, Any]) -> None:
    """One list per refresh; a container is inspected once in its life, not once a pass."""
    tb, _ = host
    col = ContainerCollector(str(tb.hosts[0].docker_socket), use_sdk=False)
    procs = ProcessCollector()
    col.refresh()
    first = col.calls
    assert first == 1 + 3  # the list, then each of the three containers once
    for _ in range(3):
        col.refresh()
        col.snapshot(procs.snapshot())
    assert col.calls == first + 3


def test_image_name_when_its_tag_moved_on(host: tuple[Testbed, Any]) -> None:
    """The list shows an image id once the tag names another image: the name is looked up
    once per image id, and a container whose image has no tag left shows a short id."""
    tb, d = host
    h = tb.hosts[0]
    old_id = images.image_id(h.docker_socket, images.TEST_TAG)
    d.api.tag(old_id, "llmaos-test/keep", "1")
    c = d.containers.create(images.TEST_TAG, ["true"], name="retagged")
    images.import_image(h.docker_socket, images.TEST_TAG)  # the tag moves to a new image
    try:
        col = ContainerCollector(str(h.docker_socket), use_sdk=False)
        col.refresh()
        names = {i.name: i.image for i in col.snapshot({})}
        assert names["retagged"] == "llmaos-test/keep:1"
        calls = col.calls
        col.snapshot({})
        assert col.calls == calls
    finally:
        c.remove(force=True)
        d.api.tag(old_id, images.TEST_TAG)


def test_engine_that_dies_and_returns(host: tuple[Testbed, Any]) -> None:
    tb, _ = host
    h = tb.hosts[0]
    col = ContainerCollector(str(h.docker_socket), use_sdk=False)
    assert col.refresh()
    tb.kill_dockerd(h)
    try:
        assert col.refresh() is False
        assert col.reason is not None and "does not answer" in col.reason
        assert col.snapshot({}) == []
    finally:
        tb.start_dockerd(h)
    assert col.refresh(), col.reason
    assert {c.name for c in col.snapshot({})} >= {"busy", "idle", "stopped"}
