"""The console's core watching three real hosts: network namespaces, each with OpenSSH sshd.

The agent is pushed as a zipapp over SFTP and run by each host's sshd inside
that host's namespaces, so each reports its own hostname. A host whose sshd is
killed goes down and comes back when sshd does; a host whose network is cut
turns stale within 3 s and up again when the network returns; cut for longer, the
keep-alives that start when it turns stale take it down, and it reconnects when the
network returns. No console restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from llmaos_tui.fleet import deploy
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.ssh import SshLink, SshOptions
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.fleet.watcher import Backoff, HostWatcher
from tests.helpers import wait_for
from tests.testbed import Testbed, testbed_fixture  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def watching(
    tb: Testbed, downs: list[tuple[str, str]] | None = None, **options_kw: float
) -> AsyncIterator[FleetState]:
    """The testbed's hosts watched; ``downs`` gets (host, reason) each time one is down."""
    fleet = FleetState()

    def notify(h: HostState) -> None:
        if downs is not None and h.status is HostStatus.DOWN and h.cause:
            downs.append((h.name, h.cause))

    options = SshOptions(
        known_hosts=tb.known_hosts,
        client_keys=[str(tb.client_key)],
        config=[],
        use_agent=False,
        connect_timeout=5.0,
        **options_kw,  # type: ignore[arg-type]
    )
    limiter = asyncio.Semaphore(16)
    watchers = [
        HostWatcher(
            fleet.add(h.name),
            SshLink(
                HostSpec(name=h.name, host=h.addr, user="root", python=sys.executable),
                options=options,
                limiter=limiter,
            ),
            notify,
            backoff=Backoff(first=0.2, cap=1.0),
        )
        for h in tb.hosts
    ]
    tasks = [asyncio.ensure_future(w.run()) for w in watchers]
    try:
        yield fleet
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def all_up(fleet: FleetState) -> bool:
    return all(h.status is HostStatus.UP and h.sample is not None for h in fleet.hosts.values())


async def test_three_hosts_over_openssh_with_the_agent_pushed(testbed: Testbed) -> None:
    data, digest = deploy.zipapp()
    pushed = Path.home() / deploy.remote_path(digest)
    pushed.unlink(missing_ok=True)  # the hosts share this machine's /root: start without it

    async with watching(testbed) as fleet:
        await wait_for(lambda: all_up(fleet), 60, "three hosts up")
        assert pushed.read_bytes() == data
        for h in testbed.hosts:
            hello = fleet.hosts[h.name].hello
            assert hello is not None and hello.host.hostname == h.name  # its own agent
        assert 0.0 <= fleet.beta() <= 2.0


async def test_killed_sshd_goes_down_and_comes_back(testbed: Testbed) -> None:
    async with watching(testbed) as fleet:
        await wait_for(lambda: all_up(fleet), 60, "three hosts up")
        victim, other = testbed.hosts[1], fleet.hosts[testbed.hosts[0].name]
        host = fleet.hosts[victim.name]

        testbed.kill_sshd(victim)
        await wait_for(lambda: host.status is not HostStatus.UP, 3, "the host not up in 3 s")
        seen = len(other.history)
        await wait_for(lambda: len(other.history) > seen + 1, 10, "the others still updating")

        testbed.start_sshd(victim)
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up again")
        n = len(host.history)
        await wait_for(lambda: len(host.history) > n, 10, "new samples from it")


async def test_cut_network_turns_stale_within_3_s_and_recovers(testbed: Testbed) -> None:
    async with watching(testbed) as fleet:
        await wait_for(lambda: all_up(fleet), 60, "three hosts up")
        victim = testbed.hosts[2]
        host = fleet.hosts[victim.name]

        testbed.set_link(victim, up=False)
        await wait_for(lambda: host.status is not HostStatus.UP, 3.5, "stale within 3 s")
        assert host.status in (HostStatus.STALE, HostStatus.DOWN)
        testbed.set_link(victim, up=True)
        await wait_for(lambda: host.status is HostStatus.UP, 30, "up again")


async def test_a_network_cut_for_long_ends_in_keepalive_down_and_a_reconnect(
    testbed: Testbed,
) -> None:
    # Keep-alives are off while samples come (each sample shows the link alive) and on
    # once the host is stale: without them a silent link would stay stale for ever.
    async with watching(testbed, keepalive_interval=1.0, keepalive_count_max=2) as fleet:
        await wait_for(lambda: all_up(fleet), 60, "three hosts up")
        victim = testbed.hosts[0]
        host = fleet.hosts[victim.name]
        others = [fleet.hosts[h.name] for h in testbed.hosts[1:]]
        testbed.set_link(victim, up=False)
        try:
            await wait_for(lambda: host.status is HostStatus.STALE, 10, "stale")
            await wait_for(lambda: host.status is HostStatus.DOWN, 20, "down by keep-alive")
            assert "keepalive" in host.reason, host.reason
            assert all(h.status is HostStatus.UP for h in others), "the others stay up"
        finally:
            testbed.set_link(victim, up=True)
        attempts = host.sample.seq if host.sample is not None else 0
        await wait_for(lambda: host.status is HostStatus.UP, 60, "up again")
        await wait_for(
            lambda: host.sample is not None and host.sample.seq != attempts, 10, "new samples"
        )


async def test_an_agent_killed_by_a_signal_is_down_for_that_reason(testbed: Testbed) -> None:
    downs: list[tuple[str, str]] = []
    async with watching(testbed, downs) as fleet:
        await wait_for(lambda: all_up(fleet), 60, "three hosts up")
        victim = testbed.hosts[1]
        assert victim.sshd_pid is not None
        # The console's channel runs `... attach` under the host's sshd: kill it as the OOM
        # killer or an operator's kill -9 would. sshd reports the signal (exit-signal).
        bridges = [
            p
            for p in psutil.Process(victim.sshd_pid).children(recursive=True)
            if "attach" in p.cmdline()
        ]
        assert bridges, "the agent's attach under the host's sshd"
        for p in bridges:
            p.kill()
        await wait_for(lambda: any(n == victim.name for n, _ in downs), 20, "down")
        reasons = [r for n, r in downs if n == victim.name]
        assert reasons[0] == "the agent was killed by SIGKILL", reasons
        await wait_for(lambda: fleet.hosts[victim.name].status is HostStatus.UP, 60, "back up")
