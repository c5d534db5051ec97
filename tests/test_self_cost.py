"""The agent's report of its own cost (llmaos_agent/collect/self_cost.py) against psutil's
reading of the same process, and the sampler's cadence for it."""

from __future__ import annotations

import time

import psutil

from llmaos_agent.collect.sampler import Sampler
from llmaos_agent.collect.self_cost import EVERY, SelfCost


def test_cpu_and_rss_are_what_psutil_reads_of_this_process() -> None:
    me = psutil.Process()
    before = me.cpu_times()
    t0 = time.monotonic()
    cost = SelfCost()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # 0.3 s of this process's CPU, however busy the box
        pass
    got = cost.read()
    span = time.monotonic() - t0
    after = me.cpu_times()
    used = (after.user + after.system) - (before.user + before.system)
    # psutil's window holds SelfCost's: its figure is at least SelfCost's share of it.
    assert 0.0 < got.cpu <= used / span * 1.05 + 0.01
    assert got.cpu * span >= 0.25  # the 0.3 s burnt, less the clocks' ticks
    rss = me.memory_info().rss
    assert got.rss is not None and 0.8 * rss < got.rss < 1.25 * rss


def test_the_sampler_reports_it_one_sample_in_every() -> None:
    s = Sampler(io=False)
    try:
        with_cost = [s.sample().agent is not None for _ in range(2 * EVERY)]
    finally:
        s.close()
    assert with_cost.count(True) == 2
    assert with_cost[EVERY - 1] and with_cost[2 * EVERY - 1]
