"""Exporter cost: CPU per Prometheus scrape and the scrape's size, at fleet scale.

    python bench/exporter.py                    # 200 hosts of 64 cores, 50 scrapes
    python bench/exporter.py --hosts 50 --gpus 8 --scrapes 100

A FleetState is filled as the console's watchers fill it (hello, then samples through
HostState.on_sample, requests and containers through their deltas), from the same wire
Structs the agents send: N hosts of C cores, every host with G GPUs, 4 interfaces, 2 disks,
a process table of 300 rows (the agent's among them), a few requests and containers. Then:

- ``direct``: the registry's collect and text formatting (prometheus_client's
  generate_latest), in this thread: what one scrape costs where it is computed; and of
  that, ``on the loop``: the collector's pass over the fleet alone, which is what the
  console's event loop is held for per scrape (the formatting runs in the server's thread);
- ``http``: the same over the exporter's HTTP server, the fleet read on an event loop
  running in another thread (the console's arrangement), fetched by a client in another
  process: this process's CPU (serving thread, loop hop, formatting) per scrape;
- ``baseline``: the same series kept in prometheus_client Gauge objects (the way an
  exporter that copies each sample into the library's metrics works), side by side: its
  scrape, and the CPU of copying every host's sample into the gauges, which that design
  pays every second whether or not anyone scrapes.

Bytes: the plain exposition and gzipped (Prometheus asks for gzip).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "agents"))

from prometheus_client import CollectorRegistry, Gauge, generate_latest  # noqa: E402

from llmaos_agent.protocol import (  # noqa: E402
    Capabilities,
    Container,
    ContainerDelta,
    DiskRate,
    GpuSample,
    Hello,
    HostFacts,
    Memory,
    NetRate,
    Proc,
    ProcDelta,
    RequestDelta,
    RequestInfo,
    Sample,
)
from llmaos_tui.exporter import (  # noqa: E402
    FleetCollector,
    MetricsServer,
    parse_listen,
    registry_for,
)
from llmaos_tui.fleet.state import FleetState, HostState, HostStatus  # noqa: E402

AGENT_PID = 777


def _hello(i: int, cores: int) -> Hello:
    return Hello(
        protocol=6, agent_version="0.1.0", pid=AGENT_PID,
        host=HostFacts(hostname=f"sim{i:03d}", os="Linux", os_release="6.1", arch="x86_64",
                       python="3.11", user="ops", cores=cores, physical_cores=cores // 2,
                       mem_total=2**38, boot_time=0.0),
        caps=Capabilities(affinity=True, cpu_num=True, nvml=True, nvml_reason=None, docker=True,
                          docker_reason=None, root=False, read_only=False),
        interval=1.0, proc_interval=2.0,
    )  # fmt: skip


def _sample(rng: random.Random, seq: int, cores: int, gpus: int, procs: bool) -> Sample:
    loads = [round(rng.random(), 2) for _ in range(cores)]
    table = None
    if procs:
        rows = [
            Proc(pid, 1, f"proc{pid}", "ops", rng.random() * 50, 10**8, 0, None, pid % cores, "S",
                 0.0, None, f"/usr/bin/proc{pid} --flag")
            for pid in range(1000, 1299)
        ]  # fmt: skip
        rows.append(Proc(AGENT_PID, 1, "python3", "ops", 1.5, 3 * 10**7, 0, None, 0, "S", 0.0,
                         None, "python3 -m llmaos_agent daemon"))  # fmt: skip
        table = ProcDelta(full=True, upsert=rows, gone=[])
    return Sample(
        t=time.time(), seq=seq, cpu=loads,
        mem=Memory(total=2**38, used=2**37 + rng.randrange(2**30), available=2**37,
                   swap_total=2**33, swap_used=0),
        load=[sum(loads)] * 3,
        gpus=[GpuSample(index=g, uuid=f"GPU-{seq:08x}-0000-0000-0000-{g:012d}",
                        name="NVIDIA H100 80GB HBM3", util=round(rng.random(), 2),
                        mem_used=rng.randrange(8 * 10**10), mem_total=85_520_809_984)
              for g in range(gpus)],
        procs=table,
        net=[NetRate(f"eth{k}", rng.randrange(10**9), rng.randrange(10**9)) for k in range(4)],
        disk=[DiskRate(f"nvme{k}n1", rng.randrange(10**9), rng.randrange(10**9))
              for k in range(2)],
    )  # fmt: skip


def _request(i: int, state: str) -> RequestInfo:
    return RequestInfo(id=f"r{i:06d}", name="job", argv=["sleep", "1"], shell=False, priority=0,
                       cpus=1, gpus=0, share_gpu=False, mem=0, state=state, seq=i,  # type: ignore[arg-type]
                       submitted=0.0)  # fmt: skip


def _container(i: int, state: str) -> Container:
    return Container(id=f"{i:064x}", name=f"c{i}", image="img:1", image_id="sha256:0",
                     state=state, status="Up", created=0.0)  # type: ignore[arg-type]  # fmt: skip


def fill(n: int, cores: int, gpus: int) -> FleetState:
    fleet = FleetState()
    rng = random.Random(1)
    for i in range(n):
        h = fleet.add(f"sim{i:03d}", f"ops@10.0.{i // 250}.{i % 250}")
        h.on_hello(_hello(i, cores))
        h.on_sample(_sample(rng, 1, cores, gpus, procs=True))
        h.on_sample(_sample(rng, 2, cores, gpus, procs=False))
        states = ["queued", "running", "running", "done", "held"]
        h.on_requests(
            RequestDelta(full=True, upsert=[_request(k, s) for k, s in enumerate(states)])
        )
        cstates = ["running", "running", "exited"]
        h.on_containers(
            ContainerDelta(full=True, upsert=[_container(k, s) for k, s in enumerate(cstates)])
        )
        h.set_status(HostStatus.UP)
    return fleet


# --------------------------------------------------------------------------- the baseline


class GaugeCopy:
    """The other design: every sample copied into prometheus_client Gauges, which the
    library then formats (labels children kept per series)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        h, g = ["host"], ["host", "gpu", "uuid"]
        self.up = Gauge("llmaos_host_up", "up", h, registry=r)
        self.core = Gauge("llmaos_core_load", "load", ["host", "core"], registry=r)
        self.mem_used = Gauge("llmaos_memory_used_bytes", "m", h, registry=r)
        self.mem_total = Gauge("llmaos_memory_total_bytes", "m", h, registry=r)
        self.gpu_util = Gauge("llmaos_gpu_utilization", "g", g, registry=r)
        self.gpu_used = Gauge("llmaos_gpu_memory_used_bytes", "g", g, registry=r)
        self.gpu_total = Gauge("llmaos_gpu_memory_total_bytes", "g", g, registry=r)
        self.beta_cpu = Gauge("llmaos_beta_cpu", "b", h, registry=r)
        self.beta_gpu = Gauge("llmaos_beta_gpu", "b", h, registry=r)
        self.beta_fleet = Gauge("llmaos_beta_fleet", "b", registry=r)
        self.requests = Gauge("llmaos_requests", "r", ["host", "state"], registry=r)
        self.containers = Gauge("llmaos_containers", "c", ["host", "state"], registry=r)
        self.net_rx = Gauge("llmaos_network_receive_bytes_per_second", "n", ["host", "interface"],
                            registry=r)  # fmt: skip
        self.net_tx = Gauge("llmaos_network_transmit_bytes_per_second", "n", ["host", "interface"],
                            registry=r)  # fmt: skip

    def on_sample(self, h: HostState) -> None:
        s = h.sample
        assert s is not None
        name = h.name
        self.up.labels(name).set(1)
        for i, v in enumerate(s.cpu):
            self.core.labels(name, str(i)).set(v)
        self.mem_used.labels(name).set(s.mem.used)
        self.mem_total.labels(name).set(s.mem.total)
        for gs in s.gpus:
            if gs.util is not None:
                self.gpu_util.labels(name, str(gs.index), gs.uuid).set(gs.util)
            self.gpu_used.labels(name, str(gs.index), gs.uuid).set(gs.mem_used or 0)
            self.gpu_total.labels(name, str(gs.index), gs.uuid).set(gs.mem_total or 0)
        self.beta_cpu.labels(name).set(h.beta_cpu or 0.0)
        if h.beta_gpu is not None:
            self.beta_gpu.labels(name).set(h.beta_gpu)
        for n in s.net:
            self.net_rx.labels(name, n.name).set(n.rx)
            self.net_tx.labels(name, n.name).set(n.tx)

    def on_tick(self, fleet: FleetState) -> None:
        self.beta_fleet.set(fleet.beta())
        for h in fleet.hosts.values():
            counts: dict[str, int] = {}
            for r in h.requests.values():
                counts[r.state] = counts.get(r.state, 0) + 1
            for st, k in counts.items():
                self.requests.labels(h.name, st).set(k)
            ccounts: dict[str, int] = {}
            for c in h.containers.values():
                ccounts[c.state] = ccounts.get(c.state, 0) + 1
            for st, k in ccounts.items():
                self.containers.labels(h.name, st).set(k)


# --------------------------------------------------------------------------- measuring


def _cpu_per(fn: Any, repeats: int) -> tuple[float, Any]:
    """Median CPU seconds (this process, all threads) of ``fn()`` over ``repeats`` calls."""
    out = None
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        out = fn()
        times.append(time.process_time() - c0)
    return statistics.median(times), out


CLIENT = """
import sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    with urllib.request.urlopen(url, timeout=60) as r:
        r.read()
"""


def _http(fleet: FleetState, scrapes: int) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="loop")
    thread.start()
    server = MetricsServer(fleet, parse_listen("127.0.0.1:0"), loop, process=False).start()
    try:
        subprocess.run([sys.executable, "-c", CLIENT, server.url, "3"], check=True)  # warm
        c0, w0 = time.process_time(), time.monotonic()
        subprocess.run([sys.executable, "-c", CLIENT, server.url, str(scrapes)], check=True)
        cpu, wall = time.process_time() - c0, time.monotonic() - w0
    finally:
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    return {
        "http_cpu_ms": round(cpu / scrapes * 1000, 2),
        "http_wall_ms": round(wall / scrapes * 1000, 2),
    }


def measure(n: int, cores: int, gpus: int, scrapes: int) -> dict[str, Any]:
    fleet = fill(n, cores, gpus)
    registry = registry_for(fleet, process=False)
    direct, text = _cpu_per(lambda: generate_latest(registry), scrapes)
    # What the event loop is held for per scrape (the rest is formatting, in the server's
    # thread): the one pass over the fleet.
    collector = FleetCollector(fleet)
    on_loop, _ = _cpu_per(collector.families, scrapes)
    copy = GaugeCopy()

    def update() -> None:
        for h in fleet.hosts.values():
            copy.on_sample(h)
        copy.on_tick(fleet)

    update()  # the children exist from the first sample on
    upd, _ = _cpu_per(update, max(5, scrapes // 5))
    base, base_text = _cpu_per(lambda: generate_latest(copy.registry), scrapes)
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    return {
        "hosts": n, "cores": cores, "gpus": gpus, "series": series,
        "bytes": len(text), "gzip_bytes": len(gzip.compress(text, 6)),
        "direct_cpu_ms": round(direct * 1000, 2),
        "loop_cpu_ms": round(on_loop * 1000, 2),
        "baseline_scrape_cpu_ms": round(base * 1000, 2),
        "baseline_update_cpu_ms_per_s": round(upd * 1000, 2),
        "baseline_bytes": len(base_text),
        "ratio_direct_vs_baseline_scrape": round(direct / base, 2) if base else None,
        **_http(fleet, scrapes),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--hosts", type=int, action="append", help="hosts (repeatable; default 50 and 200)"
    )
    ap.add_argument("--cores", type=int, default=64)
    ap.add_argument("--gpus", type=int, default=0, help="GPUs per host (default 0)")
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [measure(n, args.cores, args.gpus, args.scrapes) for n in args.hosts or [50, 200]]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.scrapes} scrapes each")
    for r in rows:
        print(
            f"{r['hosts']} hosts x {r['cores']} cores, {r['gpus']} GPUs: {r['series']} series, "
            f"{r['bytes'] / 1024:.0f} KiB ({r['gzip_bytes'] / 1024:.0f} KiB gzip); "
            f"direct {r['direct_cpu_ms']} ms CPU (on the loop {r['loop_cpu_ms']} ms), "
            f"over HTTP {r['http_cpu_ms']} ms CPU "
            f"({r['http_wall_ms']} ms wall); baseline Gauges: scrape {r['baseline_scrape_cpu_ms']} "
            f"ms + {r['baseline_update_cpu_ms_per_s']} ms/s of copying "
            f"(ratio direct/baseline scrape {r['ratio_direct_vs_baseline_scrape']})"
        )


if __name__ == "__main__":
    main()
