"""The SSH link against a real SSH server (asyncssh's, on loopback) running the real agent.

No root needed: the server runs each command with /bin/sh in a private home, so
the zipapp push, the host-key rules and reconnects are exercised end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import psutil
import pytest

from llmaos_tui.fleet import deploy
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.ssh import HostKeyQuestion, SshLink, SshOptions
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.fleet.watcher import Backoff, HostWatcher
from tests.helpers import DATA, wait_for
from tests.sshserver import SshServer


async def down_with(host: HostState, text: str, timeout: float = 60.0) -> None:
    """Wait until ``host`` is down for the reason containing ``text``. On a starved machine
    an attempt may first fail for another reason (a connect that timed out); the watcher
    retries, so the reason the test is about comes next."""
    try:
        await wait_for(
            lambda: host.status is HostStatus.DOWN and text in host.reason, timeout, text
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the host is {host.status.value}: {host.reason}") from None


def link_to(srv: SshServer, python: str | None = sys.executable, **kw: object) -> SshLink:
    spec = HostSpec(name="h1", host="127.0.0.1", port=srv.port, user="ops", python=python)
    options = SshOptions(
        known_hosts=srv.known_hosts,
        client_keys=[str(srv.client_key_path)],
        config=[],
        use_agent=False,
        connect_timeout=30.0,  # a starved machine's logins are slow, not refused
        keepalive_interval=1.0,
        keepalive_count_max=2,
    )
    return SshLink(spec, options=options, **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def watching(link: SshLink, **kw: object) -> AsyncIterator[HostState]:
    state = FleetState().add(link.name)
    fast = Backoff(first=0.2, cap=0.5)
    watcher = HostWatcher(state, link, lambda s: None, backoff=fast, **kw)  # type: ignore[arg-type]
    task = asyncio.ensure_future(watcher.run())
    try:
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_agent_is_pushed_and_streams_samples_over_ssh(server: SshServer) -> None:
    link = link_to(server)
    async with watching(link) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
        await wait_for(lambda: host.sample is not None and len(host.procs) > 3, 15, "samples")
        assert host.hello is not None and host.hello.host.cores == len(host.sample.cpu)  # type: ignore[union-attr]
    data, digest = deploy.zipapp()
    pushed = server.home / deploy.remote_path(digest)
    assert pushed.read_bytes() == data
    assert [p.name for p in pushed.parent.iterdir()] == [pushed.name]  # no .part left
    assert server.commands[-1] == deploy.posix_command(deploy.remote_path(digest), sys.executable)

    # Next time the same agent is reused, not uploaded again.
    mtime = pushed.stat().st_mtime_ns
    async with watching(link_to(server)) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up again")
    assert pushed.stat().st_mtime_ns == mtime


async def test_host_comes_back_after_the_server_drops_it(server: SshServer) -> None:
    async with watching(link_to(server)) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
        await server.stop()
        await wait_for(lambda: host.status is HostStatus.DOWN, 30, "the host down")
        assert "connect" in host.reason or "lost" in host.reason or "closed" in host.reason
        await server.start()
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up after restart")
        seen = len(host.history)
        await wait_for(lambda: len(host.history) > seen, 10, "new samples")


async def test_unknown_key_is_asked_and_written_when_trusted(server: SshServer) -> None:
    server.known_hosts.write_text("")
    questions: list[HostKeyQuestion] = []

    async def yes(q: HostKeyQuestion) -> bool:
        questions.append(q)
        return True

    async with watching(link_to(server, ask=yes)) as host:
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
    fp = server.host_key.get_fingerprint("sha256")
    assert [q.fingerprint for q in questions] == [fp]
    assert questions[0].key_type == "ssh-ed25519"
    known = asyncssh.read_known_hosts(str(server.known_hosts))
    assert known.match("127.0.0.1", "127.0.0.1", server.port)[0]


async def test_unknown_key_refused_changes_nothing(server: SshServer) -> None:
    server.known_hosts.write_text("")

    asked = 0

    async def no(q: HostKeyQuestion) -> bool:
        nonlocal asked
        asked += 1
        return False

    async with watching(link_to(server, ask=no)) as host:
        await wait_for(lambda: host.retry_held, 60, "the host down, not retried")
        assert host.status is HostStatus.DOWN
        assert "unknown host key" in host.reason and "not trusted" in host.reason
        connects = len(server.connects)
        await asyncio.sleep(1.0)  # several backoffs' worth: the operator is not asked again
        assert asked == 1 and len(server.connects) == connects
    assert server.known_hosts.read_text() == ""
    assert server.commands == []  # nothing ran on a host we did not trust


async def test_changed_key_is_refused_without_asking(server: SshServer) -> None:
    asked: list[HostKeyQuestion] = []

    async def yes(q: HostKeyQuestion) -> bool:
        asked.append(q)
        return True

    before = server.known_hosts.read_text()
    await server.replace_host_key()
    async with watching(link_to(server, ask=yes)) as host:
        await wait_for(lambda: host.retry_held, 60, "the host down, not retried")
        assert host.status is HostStatus.DOWN
        assert "HOST KEY CHANGED" in host.reason
        assert server.host_key.get_fingerprint("sha256") in host.reason
    assert asked == []
    assert server.known_hosts.read_text() == before
    assert server.commands == []


async def test_host_without_psutil_says_what_to_install(server: SshServer) -> None:
    # -S: no site-packages, so this Python has neither psutil nor msgspec.
    async with watching(link_to(server, python=f"{sys.executable} -S")) as host:
        await down_with(host, "pip install")
        assert "psutil" in host.reason


async def test_host_without_python_says_so(server: SshServer) -> None:
    async with watching(link_to(server, python="/nonexistent/python3")) as host:
        await down_with(host, "no Python at '/nonexistent/python3'")


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("garbage", "speaks garbage"),
        ("huge", "byte limit"),
        ("flood", "floods the link"),
        ("exit", "exited with code 7: scripted agent: giving up"),
    ],
)
async def test_hostile_agent_behind_ssh_turns_only_its_host_down(
    server: SshServer, tmp_path: Path, agent_home: Path, mode: str, reason: str
) -> None:
    good = SshServer(tmp_path / "good", env={"LLMAOS_AGENT_HOME": str(agent_home)})
    await good.start()
    good.trust()
    server.override = f"exec {sys.executable} {DATA / 'scripted_agent.py'} {mode}"
    rss = psutil.Process().memory_info().rss
    try:
        async with watching(link_to(good)) as ok, watching(link_to(server)) as bad:
            await wait_for(lambda: ok.status is HostStatus.UP, 30, "the good host up")
            await down_with(bad, reason)
            seen = len(ok.history)
            await wait_for(lambda: len(ok.history) > seen + 1, 10, "the good host updating")
        # A 100 MB line or a flood is dropped as it arrives, never held.
        assert psutil.Process().memory_info().rss - rss < 60 * 2**20
    finally:
        await good.stop()


async def test_wrong_protocol_version_behind_ssh_is_refused(server: SshServer) -> None:
    server.override = f"exec {sys.executable} {DATA / 'scripted_agent.py'} ok --protocol 99"
    async with watching(link_to(server)) as host:
        await down_with(host, "protocol 99")
