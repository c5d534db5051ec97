"""The console's headless core against real agents and misbehaving ones, over real pipes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from llmaos_agent.protocol import Memory, Sample
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus
from llmaos_tui.fleet.watcher import Backoff, HostWatcher
from tests.helpers import RECORDING, scripted, wait_for


@contextlib.asynccontextmanager
async def watching(link: LocalLink, **kw: object) -> AsyncIterator[HostState]:
    fleet = FleetState()
    host = fleet.add(link.name)
    changes: list[HostStatus] = []
    watcher = HostWatcher(
        host,
        link,
        lambda h: changes.append(h.status),
        backoff=Backoff(0.2, 1.0),
        **kw,  # type: ignore[arg-type]
    )
    task = asyncio.ensure_future(watcher.run())
    try:
        yield host
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_local_agent_comes_up_with_cores_and_processes(agent_home: Path) -> None:
    async with watching(LocalLink()) as host:
        await wait_for(lambda: host.status is HostStatus.UP, what="host up")
        assert host.hello is not None
        assert host.hello.host.cores == os.cpu_count()
        await wait_for(lambda: os.getpid() in host.procs, what="our pid in the process table")
        assert host.sample is not None and len(host.sample.cpu) == os.cpu_count()
        assert host.procs[os.getpid()].name == psutil.Process().name()
        assert host.beta_cpu is not None and 0.0 <= host.beta_cpu <= 2.0
        assert len(host.history) >= 1


@pytest.mark.parametrize(
    ("mode", "extra", "reason"),
    [
        ("no-hello", (), "did not say hello"),
        ("ok", ("--protocol", "99"), "protocol 99"),
        ("garbage", (), "speaks garbage"),
        ("huge", (), "byte limit"),
        ("exit", (), "exited with code 7: scripted agent: giving up"),
    ],
)
async def test_misbehaving_agent_turns_host_down_with_reason(
    mode: str, extra: tuple[str, ...], reason: str
) -> None:
    async with watching(scripted(mode, *extra)) as host:
        await wait_for(lambda: host.status is HostStatus.DOWN, what=f"{mode} -> down")
        assert reason in host.reason


def _last_recorded_seq() -> int:
    """The seq of the last sample in the recording the scripted agent replays."""
    seqs = [
        json.loads(ln)["params"]["seq"]
        for ln in RECORDING.read_text().splitlines()
        if ln.strip() and json.loads(ln)["method"] == "sample"
    ]
    return int(seqs[-1])


async def test_one_bad_line_is_a_warning_not_an_outage() -> None:
    async with watching(scripted("one-garbage")) as host:
        await wait_for(lambda: bool(host.warnings), what="a warning")
        # The samples after the bad line come in: the last one recorded is shown.
        last = _last_recorded_seq()
        await wait_for(
            lambda: host.sample is not None and host.sample.seq == last, what="later samples"
        )
        assert host.status is HostStatus.UP
        assert "bad line" in host.warnings[-1]
        assert host.sample is not None


async def test_silent_agent_turns_stale() -> None:
    async with watching(scripted("silent"), stale_after=0.6) as host:
        await wait_for(lambda: host.status is HostStatus.STALE, timeout=10, what="stale")
        assert "no sample" in host.reason


async def test_killed_daemon_goes_down_then_comes_back(agent_home: Path) -> None:
    async with watching(LocalLink()) as host:
        await wait_for(lambda: host.status is HostStatus.UP and host.hello is not None)
        assert host.hello is not None
        first_pid = host.hello.pid
        os.kill(first_pid, 9)
        await wait_for(lambda: host.status is HostStatus.DOWN, what="down after kill")
        assert "exited with code 3" in host.reason or "closed" in host.reason
        # attach starts a fresh daemon on the next connect
        await wait_for(
            lambda: (
                host.status is HostStatus.UP
                and host.hello is not None
                and host.hello.pid != first_pid
            ),
            timeout=20,
            what="up again on a new daemon",
        )


async def test_missing_agent_command_is_down_with_reason() -> None:
    async with watching(LocalLink("x", ["/nonexistent/llmaos-agent", "attach"])) as host:
        await wait_for(lambda: host.status is HostStatus.DOWN)
        assert "cannot run /nonexistent/llmaos-agent" in host.reason


def _sample(cpu: list[float]) -> Sample:
    return Sample(t=1.0, seq=1, cpu=cpu, mem=Memory(100, 50, 50, 0, 0))


def test_fleet_beta_is_capacity_weighted() -> None:
    fleet = FleetState()
    big, small = fleet.add("big"), fleet.add("small")
    for h in (big, small):
        h.set_status(HostStatus.UP)
    big.on_sample(_sample([0.5] * 8))  # 4 busy cores of 8
    small.on_sample(_sample([0.5] * 2))  # 1 busy core of 2: same share, balanced
    assert fleet.beta() == pytest.approx(0.0)
    small.on_sample(_sample([0.0, 0.0]))
    big.on_sample(_sample([1.0] * 8))
    # B = 8 busy, C = 10: big should hold 6.4, holds 8; small should hold 1.6, holds 0
    assert fleet.beta() == pytest.approx((1.6 + 1.6) / 8)
    small.set_status(HostStatus.DOWN, "gone")
    assert fleet.beta() == pytest.approx(0.0)  # hosts that do not report do not count


def test_history_after_reconnect_keeps_only_new_points() -> None:
    h = HostState("h")
    samples = [Sample(t=float(t), seq=t, cpu=[0.1], mem=Memory(1, 1, 0, 0, 0)) for t in range(1, 6)]
    h.on_history(samples[:3])
    h.on_history(samples)  # the agent sends its whole ring again on reconnect
    assert [p.t for p in h.history] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    b = Backoff(0.5, 8.0, rng=random.Random(1))
    delays = [b.next() for _ in range(10)]
    for i, d in enumerate(delays):
        ceiling = min(8.0, 0.5 * 2**i)
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 8.0
    b.reset()
    assert b.next() <= 0.5
