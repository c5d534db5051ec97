"""The agent's containers: the ``containers`` notification and the ``containers.*`` calls,
from a real daemon, with and without a Docker engine.

With an engine, the daemon runs here with ``DOCKER_HOST`` on a testbed host's dockerd
(whose containers' processes this machine's /proc shows), and the console's own state
(a watcher over a local link) is what is checked: the list, each container's load, and
what start, stop and logs do to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmaos_agent.protocol import (
    READ_ONLY_ERROR,
    REFUSED,
    Change,
    ContainerLog,
    ContainerLogQuery,
    ContainerRef,
)
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.session import CallError
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.fleet.watcher import HostWatcher
from tests import images
from tests.conftest import need_docker_testbed
from tests.helpers import wait_for
from tests.test_daemon import FAST, end, start_daemon
from tests.testbed import Testbed


@contextlib.asynccontextmanager
async def watched() -> AsyncIterator[tuple[HostState, HostWatcher]]:
    fleet = FleetState()
    w = HostWatcher(fleet.add("local"), LocalLink(), lambda _h: None)
    task = asyncio.ensure_future(w.run())
    try:
        await wait_for(lambda: w.state.status is HostStatus.UP, 20, "the agent up")
        yield w.state, w
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_without_an_engine_the_hello_says_why_and_calls_are_refused(
    agent_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    proc = start_daemon(*FAST)
    try:
        async with watched() as (host, w):
            assert host.hello is not None and not host.hello.caps.docker
            assert f"{tmp_path}/docker.sock" in (host.hello.caps.docker_reason or "")
            await wait_for(lambda: host.containers_version > 0, 10, "the (empty) list")
            assert host.containers == {}
            with pytest.raises(CallError) as err:
                await w.call("containers.stop", ContainerRef(id="web"))
            assert err.value.code == REFUSED and "no Docker engine" in str(err.value)
    finally:
        end(proc)


async def test_a_read_only_agent_refuses_container_changes(
    agent_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    proc = start_daemon(*FAST, "--read-only")
    try:
        async with watched() as (_host, w):
            for verb in ("start", "stop", "restart"):
                with pytest.raises(CallError) as err:
                    await w.call(f"containers.{verb}", ContainerRef(id="web"))
                assert err.value.code == READ_ONLY_ERROR
    finally:
        end(proc)
    audit = (agent_home / "state" / "audit.log").read_text()
    assert audit.count("refused: read-only") == 3 and "containers.stop" in audit


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[Testbed, Any]]:
    need_docker_testbed("these tests drive the engine with the docker SDK")
    import docker

    with Testbed(n=1, docker=True) as tb:
        h = tb.hosts[0]
        images.import_image(h.docker_socket)
        d = docker.DockerClient(base_url=f"unix://{h.docker_socket}")
        try:
            yield tb, d
        finally:
            for c in d.api.containers(all=True):
                d.api.remove_container(c["Id"], force=True, v=True)
            d.close()


@pytest.mark.integration
async def test_containers_with_their_load_and_actions(
    agent_home: Path, monkeypatch: pytest.MonkeyPatch, engine: tuple[Testbed, Any]
) -> None:
    tb, d = engine
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tb.hosts[0].docker_socket}")
    d.containers.run(
        images.TEST_TAG,
        ["sh", "-c", "echo started-busy; while :; do :; done"],
        name="busy",
        detach=True,
        ports={"80/tcp": 18097},
    )
    proc = start_daemon(*FAST)
    try:
        async with watched() as (host, w):
            assert host.hello is not None and host.hello.caps.docker

            def busy() -> Any:
                return next((c for c in host.containers.values() if c.name == "busy"), None)

            await wait_for(lambda: busy() is not None and busy().cpu > 0.3, 30, "busy's load")
            c = busy()
            assert c.state == "running" and c.image == images.TEST_TAG and c.pids >= 1
            assert c.started is not None and "0.0.0.0:18097->80/tcp" in c.ports

            log: ContainerLog = await w.call("containers.logs", ContainerLogQuery(id="busy"))
            assert "started-busy" in log.data

            ch: Change = await w.call("containers.stop", ContainerRef(id="busy", timeout=1))
            assert ch.before == "running" and ch.after == "exited" and "busy" in ch.target
            await wait_for(lambda: busy().state == "exited", 20, "exited in the list")
            assert busy().cpu == 0.0

            ch = await w.call("containers.start", ContainerRef(id=c.id))
            assert ch.after == "running"
            await wait_for(lambda: busy().state == "running", 20, "running in the list")

            d.api.remove_container(c.id, force=True)
            await wait_for(lambda: busy() is None, 20, "gone from the list")
            with pytest.raises(CallError) as err:
                await w.call("containers.restart", ContainerRef(id="busy"))
            assert "no container busy" in str(err.value)
    finally:
        end(proc)
    audit = (agent_home / "state" / "audit.log").read_text()
    assert "containers.stop" in audit and "containers.start" in audit


@pytest.mark.integration
async def test_a_client_that_attaches_after_a_change_elsewhere_never_gets_the_old_list(
    agent_home: Path, monkeypatch: pytest.MonkeyPatch, engine: tuple[Testbed, Any]
) -> None:
    """A container removed behind the agent's back (moved away by another console) is not
    in the first list a client then gets, even when another client's refresh ran a moment
    before the change: each client's list is taken after it came."""
    tb, d = engine
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tb.hosts[0].docker_socket}")
    d.containers.run(images.TEST_TAG, ["sleep", "600"], name="leaving", detach=True)
    proc = start_daemon(*FAST)
    try:
        for _ in range(3):  # the race is timing-bound: try it a few times
            async with watched() as (first, _w):
                await wait_for(lambda: first.containers_version > 0, 20, "the first list")
                assert any(c.name == "leaving" for c in first.containers.values())
                d.api.remove_container("leaving", force=True)
                async with watched() as (second, _w2):
                    await wait_for(lambda: second.containers_version > 0, 20, "the second list")
                    assert all(c.name != "leaving" for c in second.containers.values())
            d.containers.run(images.TEST_TAG, ["sleep", "600"], name="leaving", detach=True)
    finally:
        end(proc)
