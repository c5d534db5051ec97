"""Reconnects back off: the policy alone (pure, an injected random and clock), then the
watcher against a real asyncssh server on loopback running the real agent, a port where
the server has gone (a counting listener), and a server that refuses every login.

What is counted is what the host sees (logins begun, connects accepted), never the
watcher's own idea of it. Timings are asserted only as lower bounds, which a slow
machine meets all the more, and as attempt counts far below the old loop's; every wait
for a condition has a generous timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import sys
import time
from collections.abc import AsyncIterator

import pytest

from llmaos_tui.fleet import backoff as policy
from llmaos_tui.fleet.backoff import Backoff
from llmaos_tui.fleet.inventory import HostSpec
from llmaos_tui.fleet.link import AuthRefused, Link, LinkDown, Transport
from llmaos_tui.fleet.ssh import SshLink, SshOptions
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.fleet.watcher import RETRY_HINT, HostWatcher
from tests.helpers import wait_for
from tests.sshserver import DeadPort, SshServer

SLACK = 0.02
"""What an asyncio timer may fire early by (the loop's clock resolution), and more."""

# ------------------------------------------------------------------ the policy, pure


def test_ceiling_starts_at_base_doubles_and_stops_at_the_cap() -> None:
    assert policy.ceiling(0, 1.0, 30.0) == 0.0
    assert [policy.ceiling(n, 1.0, 30.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.ceiling(10_000, 1.0, 30.0) == 30.0  # no overflow however long it fails


def test_delay_is_the_upper_half_of_the_window() -> None:
    for n in range(1, 10):
        c = policy.ceiling(n, 0.5, 8.0)
        assert policy.delay(n, 0.0, 0.5, 8.0) == c / 2
        assert policy.delay(n, 1.0, 0.5, 8.0) == c
        assert policy.delay(n, 0.25, 0.5, 8.0) == pytest.approx(c * 0.625)
        # A draw outside [0, 1] (a bad random source) still lands in the window.
        assert c / 2 <= policy.delay(n, -3.0, 0.5, 8.0) <= policy.delay(n, 7.0, 0.5, 8.0) <= c


def test_jitter_spreads_over_the_whole_window() -> None:
    rng = random.Random(7)
    for n in (1, 3, 9):
        c = policy.ceiling(n)
        draws = [policy.delay(n, rng.random()) for _ in range(2000)]
        assert all(c / 2 <= d <= c for d in draws)
        # Spread over the window, not bunched: a fleet cut off at once comes back apart.
        assert min(draws) < c / 2 + c / 20 and max(draws) > c - c / 20
        assert len({round(d, 6) for d in draws}) > 1900


def test_only_a_session_that_stayed_up_resets_the_count() -> None:
    assert policy.failures_after(4, None, 30.0) == 5  # never up: an open that failed
    assert policy.failures_after(4, 2.0, 30.0) == 5  # up and dropped at once
    assert policy.failures_after(4, 29.9, 30.0) == 5
    assert policy.failures_after(4, 30.0, 30.0) == 1  # stayed up: start again from base
    assert policy.failures_after(0, None, 30.0) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_with_injected_clock_and_random() -> None:
    clock = Clock()
    b = Backoff(1.0, 30.0, healthy_after=30.0, rng=random.Random(3), clock=clock)
    # A host that never comes up: every wait in its window, the windows doubling to the cap.
    waits = [b.failed() for _ in range(8)]
    for n, w in enumerate(waits, 1):
        c = min(30.0, 2.0 ** (n - 1))
        assert c / 2 <= w <= c
    assert b.failures == 8
    # Up for a minute, then lost: the count starts again, so the first retry is quick.
    b.up()
    clock.now += 60.0
    assert 0.5 <= b.failed() <= 1.0 and b.failures == 1
    # The old loop's cause: a failed open long after a healthy session is no healthy
    # session. The count grows, whenever the last session began.
    clock.now += 100.0
    assert 1.0 <= b.failed() <= 2.0 and b.failures == 2
    clock.now += 100.0
    assert 2.0 <= b.failed() <= 4.0 and b.failures == 3
    # Up, and dropped at once (a host that accepts then hangs up): still a failure.
    b.up()
    clock.now += 0.5
    assert 4.0 <= b.failed() <= 8.0 and b.failures == 4
    b.reset()
    assert b.failures == 0 and 0.5 <= b.next() <= 1.0


def test_a_dead_host_costs_a_bounded_number_of_attempts() -> None:
    # The figures: 2.7 attempts a second to a dead sshd, 70 logins in 30 s.
    for seed in range(50):
        b = Backoff(rng=random.Random(seed))  # the defaults: 1 s to 30 s
        t, attempts = 0.0, 0
        while (t := t + b.failed()) < 30.0:
            attempts += 1
        # Windows end at 1, 3, 7, 15 s: four tries at least; floors at 0.5, 1.5, 3.5,
        # 7.5, 15.5, 30.5 s: five at most. The old loop made 70 logins here.
        assert 4 <= attempts <= 5
        more = 0
        while (t := t + b.failed()) < 30.0 + 600.0:
            more += 1
        assert more <= 600 / 15  # at the cap: one try in 15 to 30 s


def test_backoff_refuses_a_nonsense_window() -> None:
    for first, cap in ((0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)):
        with pytest.raises(ValueError, match="first <= cap"):
            Backoff(first, cap)


# --------------------------------------------------- the watcher against a scripted link


class FailingLink(Link):
    """A link whose every open fails as told (no network: the watcher's own logic)."""

    def __init__(self, exc: LinkDown) -> None:
        super().__init__("fails")
        self.exc = exc
        self.opens: list[float] = []

    async def open(self) -> Transport:
        self.opens.append(time.monotonic())
        raise self.exc


@contextlib.asynccontextmanager
async def watching(link: Link, backoff: Backoff) -> AsyncIterator[tuple[HostState, HostWatcher]]:
    state = FleetState().add(link.name)
    watcher = HostWatcher(state, link, lambda _s: None, backoff=backoff)
    task = asyncio.ensure_future(watcher.run())
    try:
        yield state, watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_failing_open_backs_off_and_says_when_it_tries_next() -> None:
    link = FailingLink(LinkDown("cannot connect to h: Connection refused"))
    async with watching(link, Backoff(0.2, 0.8, healthy_after=5.0)) as (host, _watcher):
        await wait_for(lambda: len(link.opens) >= 5, 30, "five opens")
        assert host.status is HostStatus.DOWN and not host.retry_held
        await wait_for(lambda: host.retry_at is not None, 10, "a retry scheduled")
        assert host.reason.startswith("cannot connect to h: Connection refused (retry in ")
        assert host.cause == "cannot connect to h: Connection refused"
    gaps = [b - a for a, b in itertools.pairwise(link.opens)]
    for n, gap in enumerate(gaps, 1):  # the gap after open n follows failure n
        assert gap >= policy.ceiling(n, 0.2, 0.8) / 2 - SLACK, gaps


async def test_retry_now_cuts_a_long_wait_short() -> None:
    link = FailingLink(LinkDown("cannot connect"))
    async with watching(link, Backoff(60.0, 60.0)) as (host, watcher):
        await wait_for(lambda: host.retry_at is not None, 10, "the first wait")
        assert "(retry in " in host.reason
        wait_left = host.retry_at - time.monotonic()  # type: ignore[operator]
        assert wait_left > 25.0
        assert watcher.retry_now()
        await wait_for(lambda: len(link.opens) == 2, 10, "the second open, at once")
        await wait_for(lambda: host.retry_at is not None, 10, "the next wait")
        assert len(link.opens) == 2 and watcher.backoff.failures == 2


async def test_an_auth_refusal_waits_for_retry_now() -> None:
    link = FailingLink(AuthRefused("SSH login refused: Permission denied"))
    async with watching(link, Backoff(0.05, 0.1)) as (host, watcher):
        await wait_for(lambda: host.retry_held, 10, "held")
        assert host.status is HostStatus.DOWN and host.retry_at is None
        assert host.reason == f"SSH login refused: Permission denied (not retried: {RETRY_HINT})"
        await asyncio.sleep(1.0)  # twenty retries' worth at this backoff
        assert len(link.opens) == 1
        assert watcher.retry_now()
        await wait_for(lambda: len(link.opens) == 2 and host.retry_held, 10, "one more, held")
        await asyncio.sleep(0.5)  # quiet window: five capped waits, no open in it
        assert len(link.opens) == 2


# ------------------------------------------------- the watcher against a real SSH server


def link_to(srv: SshServer) -> SshLink:
    spec = HostSpec(name="h1", host="127.0.0.1", port=srv.port, user="ops", python=sys.executable)
    options = SshOptions(
        known_hosts=srv.known_hosts,
        client_keys=[str(srv.client_key_path)],
        config=[],
        use_agent=False,
        connect_timeout=60.0,  # a starved machine's logins are slow: never a timeout here
        keepalive_interval=1.0,
        keepalive_count_max=2,
    )
    return SshLink(spec, options=options)


async def test_refused_login_is_tried_once_then_only_when_asked(server: SshServer) -> None:
    server.refuse_logins = True
    # A backoff this short would make ~20 logins in the quiet second below.
    async with watching(link_to(server), Backoff(0.05, 0.1)) as (host, watcher):
        await wait_for(lambda: host.retry_held, 30, "the refused host held")
        assert host.status is HostStatus.DOWN
        assert "SSH login refused" in host.reason and RETRY_HINT in host.reason
        assert len(server.logins) == 1
        await asyncio.sleep(2.0)  # quiet window (the only way to see nothing happen)
        assert len(server.logins) == 1, "a refused login is not retried unasked"
        assert server.commands == []

        assert watcher.retry_now()
        await wait_for(lambda: len(server.logins) == 2 and host.retry_held, 30, "one more")
        await asyncio.sleep(1.0)  # quiet window: ten capped waits, no login in it
        assert len(server.logins) == 2

        # The operator fixes the key and asks again: the host comes up.
        server.refuse_logins = False
        assert watcher.retry_now()
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
        assert len(server.logins) == 3
        assert not watcher.retry_now()  # nothing to cut short while up


async def test_changed_host_key_is_held_not_retried(server: SshServer) -> None:
    await server.replace_host_key()
    async with watching(link_to(server), Backoff(0.05, 0.1)) as (host, _watcher):
        await wait_for(lambda: host.retry_held, 30, "the host held")
        assert "HOST KEY CHANGED" in host.reason and RETRY_HINT in host.reason
        await asyncio.sleep(1.5)  # quiet window: fifteen capped waits, no connect in it
        assert len(server.connects) == 1 and server.logins == []


async def test_dead_port_backs_off_then_the_host_comes_back_within_the_cap(
    server: SshServer,
) -> None:
    base, cap = 0.2, 1.6
    b = Backoff(base, cap, healthy_after=0.5)
    async with watching(link_to(server), b) as (host, _watcher):
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
        await asyncio.sleep(1.0)  # up longer than healthy_after, as in the old loop's case
        # sshd dies: a listener that accepts and hangs up takes its port before the
        # connections drop, so every attempt from then on is counted.
        port = server.port
        await server.stop_listening()
        dead = DeadPort(port)
        await dead.start()
        try:
            dropped = time.monotonic()
            await server.drop()
            await wait_for(lambda: host.status is HostStatus.DOWN, 15, "the host down")
            await asyncio.sleep(8.0)  # the window the backoff is measured over
            accepts = list(dead.accepts)
            watched = time.monotonic() - dropped
            await wait_for(lambda: "(retry in " in host.reason, 10, "the countdown shown")
        finally:
            await dead.stop()

        # The floors of the windows after a healthy session (0.1, 0.2, 0.4, 0.8, 0.8, ...)
        # bound how many attempts fit in the time watched; the old loop made 2.7 a second.
        floors, t = 0, 0.0
        while (t := t + policy.ceiling(floors + 1, base, cap) / 2) <= watched:
            floors += 1
        assert 3 <= len(accepts) <= floors, accepts
        assert len(accepts) / watched < 1.5
        gaps = [b - a for a, b in itertools.pairwise(accepts)]
        # Growing: accept 1 followed failure 1, so the gap before accept n followed
        # failure n, whose wait is at least half its window.
        for n, gap in enumerate(gaps, 2):
            assert gap >= policy.ceiling(n, base, cap) / 2 - SLACK, gaps
        capped = gaps[3:]
        assert len(capped) >= 2 and len({round(g, 3) for g in capped}) > 1, capped  # jittered

        # The host returns: the next try is within one capped wait of it.
        back = time.monotonic()
        seen = len(server.logins)
        await server.start()
        await wait_for(lambda: len(server.logins) > seen, cap + 15, "a login after the return")
        assert server.logins[seen] - back <= cap + 10.0
        await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up again")


async def test_a_host_that_drops_each_session_at_once_backs_off(server: SshServer) -> None:
    base, cap = 0.4, 3.2
    async with watching(link_to(server), Backoff(base, cap, healthy_after=30.0)) as (host, _w):
        for _ in range(4):
            await wait_for(lambda: host.status is HostStatus.UP, 30, "the host up")
            await server.drop()  # accepted, up, and hung up on at once
            await wait_for(lambda: host.status is HostStatus.DOWN, 15, "the host down")
    logins = server.logins[:4]
    gaps = [b - a for a, b in itertools.pairwise(logins)]
    for n, gap in enumerate(gaps, 1):  # each session ended quickly: failure n, n+1, ...
        assert gap >= policy.ceiling(n, base, cap) / 2 - SLACK, gaps
