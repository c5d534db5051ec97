"""The exporter's agent cost and interface/disk series, as a Prometheus user reads them.

- The agent's own cost (``llmaos_agent_cpu_cores``, ``llmaos_agent_resident_bytes``) is in
  the scrape for a host whose processes the console has turned off (``procs.watch``: every
  host but the one on screen), from the real local daemon: the agent reports it in its
  samples (``Sample.agent``), not only through its row of the process table.
- An interface or disk that has gone stops being a series (after the exporter's forget
  window), while one that idles stays at 0 within it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmaos_agent.protocol import AgentCost, DiskRate, Memory, NetRate, Sample
from llmaos_tui.exporter import FleetCollector, scrape_text
from llmaos_tui.fleet.local import LocalLink
from llmaos_tui.fleet.state import FleetState, HostStatus
from llmaos_tui.fleet.watching import Watching
from tests.conftest import agent_daemons
from tests.helpers import wait_for

DEADLINE = 90.0  # a busy 2-core machine; the agent reports its cost every 10 samples

MEM = Memory(total=1 << 34, used=1 << 33, available=1 << 33, swap_total=0, swap_used=0)


def _scraped(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels: value}, through prometheus_client's own parser."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _host_value(text: str, name: str, host: str) -> float | None:
    return _scraped(text).get(name, {}).get((("host", host),))


@pytest.mark.integration
async def test_the_agents_cost_is_scraped_with_its_processes_off(agent_home: Path) -> None:
    async with Watching([LocalLink("local")]) as watching:
        w = watching.by_name["local"]
        host = w.state
        await wait_for(lambda: host.sample is not None, DEADLINE, what="a first sample")
        w.want_procs(False)
        await wait_for(lambda: not host.procs and w._told is False, DEADLINE, what="procs off")
        seen_procs = w.procs_samples

        found: list[str] = []

        def scraped() -> bool:
            text = scrape_text(watching.fleet)
            if _host_value(text, "llmaos_agent_resident_bytes", "local") is not None:
                found.append(text)
            return bool(found)

        await wait_for(scraped, DEADLINE, what="the agent's cost in a scrape")
        # It came while the console held no process table and the agent sent none.
        assert not host.procs and w.procs_samples == seen_procs
        text = found[0]
        rss = _host_value(text, "llmaos_agent_resident_bytes", "local")
        cpu = _host_value(text, "llmaos_agent_cpu_cores", "local")
        (daemon,) = agent_daemons(agent_home)
        real = daemon.memory_info().rss
        assert rss is not None and real / 2 < rss < real * 2
        assert cpu is not None and 0.0 <= cpu <= (os.cpu_count() or 1)


def _fed(samples: list[Sample]) -> FleetState:
    fleet = FleetState()
    h = fleet.add("box")
    for s in samples:
        h.on_sample(s)
    h.set_status(HostStatus.UP)
    return fleet


def _sample(t: int, **kw: object) -> Sample:
    return Sample(t=float(t), seq=t, cpu=[0.5], mem=MEM, **kw)  # type: ignore[arg-type]


def test_the_agents_cost_from_a_sample_that_carries_it() -> None:
    fleet = _fed([_sample(1), _sample(2, agent=AgentCost(cpu=0.031, rss=41_000_000))])
    text = scrape_text(fleet)
    assert _host_value(text, "llmaos_agent_cpu_cores", "box") == 0.031
    assert _host_value(text, "llmaos_agent_resident_bytes", "box") == 41_000_000
    # An agent that cannot read its RSS says so by leaving it out; its CPU is still there.
    text = scrape_text(_fed([_sample(1, agent=AgentCost(cpu=0.5, rss=None))]))
    assert _host_value(text, "llmaos_agent_cpu_cores", "box") == 0.5
    assert _host_value(text, "llmaos_agent_resident_bytes", "box") is None


def test_the_agents_cost_outlives_the_sample_that_carried_it() -> None:
    """The agent reports one sample in ten; a scrape between two reports still has it."""
    samples = [_sample(1, agent=AgentCost(cpu=0.02, rss=40_000_000))]
    samples += [_sample(t) for t in range(2, 10)]
    text = scrape_text(_fed(samples))
    assert _host_value(text, "llmaos_agent_resident_bytes", "box") == 40_000_000


def _io_series(text: str, name: str, key: str) -> dict[str, float]:
    return {dict(k)[key]: v for k, v in _scraped(text).get(name, {}).items()}


def test_a_vanished_interface_or_disk_stops_being_a_series() -> None:
    fleet = FleetState()
    h = fleet.add("box")
    h.set_status(HostStatus.UP)
    collector = FleetCollector(fleet, io_forget_s=5.0)  # 5 samples at the 1 s default

    def scrape() -> str:
        from prometheus_client import CollectorRegistry, generate_latest

        reg = CollectorRegistry()
        reg.register(collector)
        return generate_latest(reg).decode()

    rx = "llmaos_network_receive_bytes_per_second"
    rd = "llmaos_disk_read_bytes_per_second"
    both = [NetRate("eth0", 100, 10), NetRate("br-7f3a", 50, 5)]
    h.on_sample(_sample(1, net=both, disk=[DiskRate("sda", 4096, 0), DiskRate("sdb", 1, 1)]))
    text = scrape()
    assert _io_series(text, rx, "interface") == {"eth0": 100.0, "br-7f3a": 50.0}
    assert _io_series(text, rd, "disk") == {"sda": 4096.0, "sdb": 1.0}

    # The bridge is removed and sdb pulled: eth0 and sda go on moving data.
    for t in range(2, 5):
        h.on_sample(_sample(t, net=[NetRate("eth0", 200, 20)], disk=[DiskRate("sda", 8192, 0)]))
    text = scrape()
    # Within the window an absent one reads 0: it may only be idle (absent is 0 B/s).
    assert _io_series(text, rx, "interface") == {"eth0": 200.0, "br-7f3a": 0.0}
    assert _io_series(text, rd, "disk") == {"sda": 8192.0, "sdb": 0.0}

    for t in range(5, 9):
        h.on_sample(_sample(t, net=[NetRate("eth0", 300, 30)], disk=[DiskRate("sda", 1, 0)]))
    text = scrape()
    assert _io_series(text, rx, "interface") == {"eth0": 300.0}
    assert _io_series(text, "llmaos_network_transmit_bytes_per_second", "interface") == {
        "eth0": 30.0
    }
    assert _io_series(text, rd, "disk") == {"sda": 1.0}
    assert "br-7f3a" not in text and 'disk="sdb"' not in text

    # A name that comes back is a series again.
    h.on_sample(_sample(9, net=[NetRate("br-7f3a", 7, 0)]))
    assert _io_series(scrape(), rx, "interface") == {"eth0": 0.0, "br-7f3a": 7.0}
